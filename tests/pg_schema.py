"""A fresh PostgreSQL schema for a test that runs the whole app; skipped when there is none."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "INTAKE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


async def _admin() -> asyncpg.Connection:
    dsn = make_url(POSTGRES_URL).set(drivername="postgresql")
    return await asyncio.wait_for(
        asyncpg.connect(dsn.render_as_string(hide_password=False), timeout=3), timeout=5
    )


@asynccontextmanager
async def fresh_postgres_schema(prefix: str) -> AsyncIterator[str]:
    """A database URL whose search_path is a new, empty schema, dropped afterwards."""
    try:
        admin = await _admin()
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {error!r}")
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await admin.close()
    try:
        yield str(make_url(POSTGRES_URL).update_query_dict({"search_path": schema}))
    finally:
        admin = await _admin()
        try:
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await admin.close()
