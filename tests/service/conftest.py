from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bot.app import (
    build_catalogs,
    build_engine,
    build_service,
    build_survey_engine,
    import_directory_if_empty,
)
from bot.config import Settings
from bot.intake.lookups import DirectoryLookup
from bot.intake.service import IntakeService, utcnow
from storage.memory import MemoryStorage
from tests.fixtures import SMALL_DIRECTORY


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[IntakeService]:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/intake.sqlite3",
        directory_csv=SMALL_DIRECTORY,
    )
    svc = await build_service(settings)
    yield svc
    await svc.storage.close()


async def make_memory_service(
    *, clock: Callable[[], datetime] = utcnow, **options: Any
) -> IntakeService:
    """The service over `storage.memory.MemoryStorage`: fast, and its `fail_next` drives the
    conflict and failure paths on purpose. `clock` is shared by both; `options` go to
    IntakeService (the survey about the chat is offered, as in production)."""
    options.setdefault("survey", build_survey_engine())
    settings = Settings(directory_csv=SMALL_DIRECTORY)
    storage = MemoryStorage(clock=clock)
    catalogs = build_catalogs(settings)
    directory = DirectoryLookup(storage.directory)
    svc = IntakeService(
        storage, build_engine(catalogs, settings), catalogs, directory, clock=clock, **options
    )
    await import_directory_if_empty(storage, SMALL_DIRECTORY)
    await directory.refresh(force=True)
    return svc


@pytest.fixture
async def memory_service() -> AsyncIterator[IntakeService]:
    svc = await make_memory_service()
    yield svc
    await svc.storage.close()


POSTGRES_URL = os.environ.get(
    "INTAKE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


async def _admin() -> asyncpg.Connection:
    dsn = make_url(POSTGRES_URL).set(drivername="postgresql")
    return await asyncio.wait_for(
        asyncpg.connect(dsn.render_as_string(hide_password=False), timeout=3), timeout=5
    )


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def any_service(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[IntakeService]:
    """The service over each backend (memory, SQLite, PostgreSQL); on PostgreSQL in a fresh
    schema of the test database."""
    if request.param == "memory":
        memory = await make_memory_service()
        yield memory
        await memory.storage.close()
        return
    if request.param == "sqlite":
        database_url = f"sqlite+aiosqlite:///{tmp_path}/intake.sqlite3"
        schema = None
    else:
        try:
            admin = await _admin()
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {error!r}")
        schema = f"intake_svc_{uuid.uuid4().hex[:12]}"
        try:
            await admin.execute(f'CREATE SCHEMA "{schema}"')
        finally:
            await admin.close()
        database_url = str(make_url(POSTGRES_URL).update_query_dict({"search_path": schema}))
    svc = await build_service(Settings(database_url=database_url, directory_csv=SMALL_DIRECTORY))
    try:
        yield svc
    finally:
        await svc.storage.close()
        if schema is not None:
            admin = await _admin()
            try:
                await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            finally:
                await admin.close()
