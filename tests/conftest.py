"""Shared fixtures: the real application served over loopback, and a real HTTP client.

`app_server` is the whole app (`bot.app.build_app`) on a fresh SQLite file, listening on
127.0.0.1 with an ephemeral port; `start_server` starts more (other settings, or the same
database again to check a restart). `api` wraps the web chat API's three calls.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot import app as app_module
from bot.app import build_app, build_service
from bot.config import Settings
from bot.i18n import Catalogs
from bot.intake.service import IntakeService
from bot.staff.config import StaffSettings
from tests.fixtures import SMALL_DIRECTORY


@dataclass
class RunningServer:
    """One app on loopback; `stop()` runs its cleanup (the database engine is disposed)."""

    app: web.Application
    runner: web.AppRunner
    base_url: str
    settings: Settings

    async def stop(self) -> None:
        await self.runner.cleanup()


async def serve(
    settings: Settings,
    *,
    service: IntakeService | None = None,
    staff: StaffSettings | None = None,
) -> RunningServer:
    app = build_app(settings, service=service, staff=staff)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return RunningServer(app, runner, f"http://{host}:{port}", settings)


@pytest.fixture(scope="session")
def template_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database with the small directory imported, made once per session; each
    test copies it (migrating and importing for every test would dominate the run time)."""
    path = tmp_path_factory.mktemp("template") / "t.sqlite3"
    settings = Settings(database_url=f"sqlite+aiosqlite:///{path}", directory_csv=SMALL_DIRECTORY)

    async def prepare() -> None:
        service = await build_service(settings)
        await service.storage.close()

    asyncio.run(prepare())
    return path


@pytest.fixture
def server_settings(tmp_path: Path, template_database: Path) -> Settings:
    """A fresh SQLite file per test (a copy of the template), with the small fictional
    directory loaded."""
    target = tmp_path / "t.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        source = template_database.with_name(template_database.name + suffix)
        if source.exists():
            shutil.copyfile(source, target.with_name(target.name + suffix))
    return Settings(database_url=f"sqlite+aiosqlite:///{target}", directory_csv=SMALL_DIRECTORY)


_build_catalogs = app_module.build_catalogs


@functools.cache
def _catalogs(privacy_url: str) -> Catalogs:
    return _build_catalogs(Settings(privacy_url=privacy_url))


@pytest.fixture
def shared_catalogs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compile the gettext catalogs once per session, not once per server (they are
    read-only after loading); everything else about the app is built as in production."""
    monkeypatch.setattr(app_module, "build_catalogs", lambda s: _catalogs(s.privacy_url))


StartServer = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def start_server(
    server_settings: Settings, shared_catalogs: None
) -> AsyncIterator[StartServer]:
    """Start a server with `server_settings` changed by keyword overrides; stopped at the end."""
    running: list[RunningServer] = []

    async def start(
        *,
        service: IntakeService | None = None,
        staff: StaffSettings | None = None,
        **overrides: Any,
    ) -> RunningServer:
        server = await serve(replace(server_settings, **overrides), service=service, staff=staff)
        running.append(server)
        return server

    yield start
    for server in reversed(running):
        await server.stop()


@pytest.fixture
async def app_server(start_server: StartServer) -> RunningServer:
    return await start_server()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@dataclass
class ApiResult:
    status: int
    body: Any
    headers: Any


class Api:
    """The web chat API as a test sees it: raw HTTP, JSON bodies, nothing hidden."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def request(self, method: str, path: str, **kwargs: Any) -> ApiResult:
        async with self.session.request(method, self.base_url + path, **kwargs) as response:
            raw = await response.read()
            body: Any = None
            if raw and response.content_type == "application/json":
                body = await response.json()
            elif raw:
                body = raw.decode("utf-8", "replace")
            return ApiResult(response.status, body, response.headers)

    async def create(self, body: Any = None, **kwargs: Any) -> ApiResult:
        if body is not None:
            kwargs["json"] = body
        return await self.request("POST", "/api/v1/conversations", **kwargs)

    async def send(self, conversation: dict[str, Any], body: Any, **kwargs: Any) -> ApiResult:
        headers = {"Authorization": f"Bearer {conversation['token']}", **kwargs.pop("headers", {})}
        path = f"/api/v1/conversations/{conversation['conversation_id']}/messages"
        if "data" not in kwargs:
            kwargs["json"] = body
        return await self.request("POST", path, headers=headers, **kwargs)

    async def view(self, conversation: dict[str, Any], **kwargs: Any) -> ApiResult:
        headers = {"Authorization": f"Bearer {conversation['token']}", **kwargs.pop("headers", {})}
        path = f"/api/v1/conversations/{conversation['conversation_id']}"
        return await self.request("GET", path, headers=headers, **kwargs)

    async def new_conversation(self) -> dict[str, Any]:
        created = await self.create()
        assert created.status == 201, created.body
        return dict(created.body)


@pytest.fixture
def api(client: aiohttp.ClientSession, app_server: RunningServer) -> Api:
    return Api(client, app_server.base_url)


async def settle_aiosqlite_threads(limit_seconds: float = 2.0) -> None:
    """Let aiosqlite's worker threads of failed connects finish before the loop closes
    (otherwise their late callback is an unhandled-thread-exception warning, i.e. an error).
    Polling is the only option: the threads expose nothing to wait on."""
    for _ in range(int(limit_seconds / 0.01)):
        if not any("_connection_worker_thread" in t.name for t in threading.enumerate()):
            return
        await asyncio.sleep(0.01)


POSTGRES_URL = os.environ.get(
    "INTAKE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database URL on each backend: a SQLite file, or a fresh schema of the test
    PostgreSQL database (skipped, saying why, when that server does not answer)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'backend.sqlite3'}"
        return
    import asyncpg
    from sqlalchemy.engine import make_url

    dsn = make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(False)

    async def admin() -> asyncpg.Connection:
        return await asyncio.wait_for(asyncpg.connect(dsn, timeout=3), timeout=5)

    try:
        connection = await admin()
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {error!r}")
    schema = f"intake_b_{uuid.uuid4().hex[:12]}"
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await connection.close()
    try:
        yield str(make_url(POSTGRES_URL).update_query_dict({"search_path": schema}))
    finally:
        connection = await admin()
        try:
            await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await connection.close()
