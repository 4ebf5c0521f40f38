"""The python-telegram-bot `Bot`, built from settings.

Only `Bot` is used (no `Application`): updates arrive through our own aiohttp route or our
polling task, so each is acknowledged only after its turn is committed.
"""

from __future__ import annotations

import os

from telegram import Bot

from bot.channels.telegram.request import AiohttpRequest
from bot.config import ConfigError, Settings

#: Seconds. A send that hangs longer is retried from the outbox (it may then arrive twice:
#: an answer lost in transit is the one case at-least-once delivery cannot tell apart).
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
WRITE_TIMEOUT = 10.0
POOL_TIMEOUT = 5.0


def bot_id(token: str) -> str:
    """The numeric id at the start of a token: the scope of update ids, without a secret."""
    head = token.split(":", 1)[0]
    return head if head.isdigit() else "bot"


def opt_into_timedelta_periods() -> None:
    """PTB 22 warns (PTBDeprecationWarning) whenever it reads a time period as a number, even
    inside its own code: constructing `RetryAfter` on every 429 does. Opting in to the coming
    `timedelta` values removes the cause; our code reads both forms. An explicit setting of
    PTB_TIMEDELTA by the operator is left alone."""
    os.environ.setdefault("PTB_TIMEDELTA", "true")


def build_bot(settings: Settings, *, connection_pool_size: int = 32) -> Bot:
    """A Bot with bounded timeouts; `telegram_api_base_url` points it at another server (a
    local Bot API server, or the fake one in tests). HTTP goes through one aiohttp session per
    request pool (`request.AiohttpRequest`), not PTB's default httpx client."""
    opt_into_timedelta_periods()
    if not settings.telegram_token:
        raise ConfigError("INTAKE_TELEGRAM_TOKEN is not set")
    request = AiohttpRequest(
        connection_pool_size=connection_pool_size,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        write_timeout=WRITE_TIMEOUT,
        pool_timeout=POOL_TIMEOUT,
    )
    # getUpdates holds its connection for the long-poll: give it a pool of its own.
    updates_request = AiohttpRequest(
        connection_pool_size=1,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        write_timeout=WRITE_TIMEOUT,
        pool_timeout=POOL_TIMEOUT,
    )
    base = (settings.telegram_api_base_url or "https://api.telegram.org").rstrip("/")
    return Bot(
        settings.telegram_token,
        base_url=f"{base}/bot",
        base_file_url=f"{base}/file/bot",
        request=request,
        get_updates_request=updates_request,
    )
