"""The whole app (bot.app.build_app) on loopback, talking to a fake Bot API server.

Updates are posted to the running webhook as Telegram would send them; what the bot said is
read from the fake server's record of calls. `TelegramServer.settle()` waits until the
outbox is empty and the best-effort calls (callback answers, keyboard removal) are done, so
tests need no sleeps.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.app import build_app
from bot.channels.telegram import TELEGRAM, TelegramOptions
from bot.config import Settings
from tests.channels.telegram.tg_support import FAST, SECRET, TelegramServer, User
from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI
from tests.fixtures import SMALL_DIRECTORY

StartTelegram = Callable[..., Awaitable[TelegramServer]]


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeTelegramAPI]:
    fake = FakeTelegramAPI(TOKEN)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
def tg_settings(tmp_path: Path, fake_api: FakeTelegramAPI) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'tg.sqlite3'}",
        directory_csv=SMALL_DIRECTORY,
        telegram_token=TOKEN,
        telegram_webhook_secret=SECRET,
        telegram_api_base_url=fake_api.url,
    )


@pytest.fixture
async def start_telegram(tg_settings: Settings) -> AsyncIterator[StartTelegram]:
    """Start the app; keyword arguments change settings, `options` the channel's knobs."""
    running: list[TelegramServer] = []
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))

    async def start(*, options: TelegramOptions = FAST, **overrides: Any) -> TelegramServer:
        app = build_app(replace(tg_settings, **overrides))
        app[TELEGRAM].options = options
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        server = TelegramServer(app, runner, f"http://{host}:{port}", session)
        running.append(server)
        return server

    yield start
    for server in reversed(running):
        await server.stop()
    await session.close()


@pytest.fixture
async def tg(start_telegram: StartTelegram) -> TelegramServer:
    return await start_telegram()


@pytest.fixture
def make_user(fake_api: FakeTelegramAPI) -> Callable[..., User]:
    ids = itertools.count(500_001)

    def make(server: TelegramServer, **kwargs: Any) -> User:
        return User(server, fake_api, kwargs.pop("id", next(ids)), **kwargs)

    return make
