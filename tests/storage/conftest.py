"""Fixtures that give every storage test a fresh, migrated database on each backend.

SQLite: a file in tmp_path. PostgreSQL: a fresh schema per test (selected with
`?search_path=`) in the database at INTAKE_TEST_POSTGRES_URL; the tests are skipped, with the
reason, when that server does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

# Importable without an installed package (plain `pytest`, not only `python -m pytest`).
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from bot.ports import Storage  # noqa: E402
from storage import create_storage, upgrade  # noqa: E402
from storage.memory import MemoryStorage  # noqa: E402
from storage.sqlalchemy_storage import SqlStorage  # noqa: E402

POSTGRES_URL = os.environ.get(
    "INTAKE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]

_probe_cache: dict[str, str | None] = {}


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(url: str) -> asyncpg.Connection:
    return await asyncio.wait_for(asyncpg.connect(_asyncpg_dsn(url), timeout=3), timeout=5)


async def _postgres_unreachable(url: str) -> str | None:
    """Why PostgreSQL cannot be used, or None; asked once per run."""
    if url not in _probe_cache:
        try:
            connection = await _admin(url)
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            _probe_cache[url] = f"{type(error).__name__}: {error}"
        else:
            await connection.close()
            _probe_cache[url] = None
    return _probe_cache[url]


class Clock:
    """Real time plus an offset that tests can advance (outbox leases, retry delays)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Reported(list[tuple[str, str, int]]):
    """What a storage told of each batch of lone writes (storage.write_batches.BatchEvents:
    the service counts these as metrics), in order: (backend, outcome, writes); and in
    `seconds`, each batch's time from leaving its queue to its outcome."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def __call__(self, backend: str, outcome: str, writes: int, seconds: float) -> None:
        self.append((backend, outcome, writes))
        self.seconds.append(seconds)


@pytest.fixture
def reported() -> Reported:
    """Pass `on_write_batch=reported` to `create_storage`."""
    return Reported()


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database (not yet migrated) on the parametrized backend."""
    async with _empty_database(request.param, tmp_path) as url:
        yield url


@contextlib.asynccontextmanager
async def _empty_database(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'var' / 'intake.db'}"
        return
    reason = await _postgres_unreachable(POSTGRES_URL)
    if reason is not None:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {reason}")
    schema = f"intake_test_{uuid.uuid4().hex[:12]}"
    admin = await _admin(POSTGRES_URL)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await admin.close()
    try:
        yield str(make_url(POSTGRES_URL).update_query_dict({"search_path": schema}))
    finally:
        admin = await _admin(POSTGRES_URL)
        try:
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await admin.close()


@pytest.fixture
async def storage(database_url: str, clock: Clock) -> AsyncIterator[SqlStorage]:
    await upgrade(database_url)
    handle = await create_storage(database_url, clock=clock)
    try:
        yield handle
    finally:
        await handle.close()


@pytest.fixture(params=[pytest.param("memory", id="memory"), *BACKENDS])
async def any_storage(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[Storage]:
    """Every implementation of `bot.ports.Storage`, for the contract suite: in memory, SQLite
    and (marked `postgres`, skipped with the reason where absent) PostgreSQL."""
    if request.param == "memory":
        memory = MemoryStorage(clock=clock)
        yield memory
        await memory.close()
        return
    async with _empty_database(request.param, tmp_path) as url:
        await upgrade(url)
        handle = await create_storage(url, clock=clock)
        try:
            yield handle
        finally:
            await handle.close()


async def _terminate_sessions(application_name: str) -> int:
    admin = await _admin(POSTGRES_URL)
    try:
        rows = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            application_name,
        )
    finally:
        await admin.close()
    return len(rows)


@pytest.fixture
def terminate_sessions() -> Callable[[str], Awaitable[int]]:
    """Kill the PostgreSQL sessions with a given application_name, as a server restart would."""
    return _terminate_sessions
