"""Schema migrations: `await upgrade(url)` brings any database to the latest revision.

Safe to run at every start of every worker: on PostgreSQL the migration runs inside one
transaction holding `pg_advisory_xact_lock`, so workers starting together take turns and the
later ones find nothing to do (DDL is transactional there, and the lock is released by the
commit, even if the process dies). On SQLite, BEGIN IMMEDIATE does the same.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from storage.engine import create_engine, ensure_sqlite_directory, is_sqlite, normalize_url
from storage.errors import storage_errors

PACKAGE_DIR = Path(__file__).resolve().parent
#: An arbitrary 64-bit constant naming "the intake schema migration" among advisory locks.
MIGRATION_LOCK_KEY = 0x1A7A_4E57_0D8B_0001


def alembic_config() -> Config:
    """The Alembic config with paths resolved against this package, not the working directory."""
    config = Config(str(PACKAGE_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(PACKAGE_DIR / "migrations").replace("%", "%%"))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def run_locked(database_url: str, work: Callable[[Connection], Any]) -> Any:
    """Run `work` on a sync connection in one transaction that holds the migration lock."""
    url = normalize_url(database_url)
    if is_sqlite(url):
        with storage_errors():
            ensure_sqlite_directory(url)
    engine = create_engine(url, pool_size=1, timeouts=None)
    try:
        with storage_errors():
            async with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    await connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                    )
                return await connection.run_sync(work)
    finally:
        await engine.dispose()


async def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database at `database_url` to `revision` (creating a SQLite file if needed)."""

    def _upgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    await run_locked(database_url, _upgrade)


async def current_revision(database_url: str) -> str | None:
    """The revision the database is at; None for an empty database."""

    def _current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    result: str | None = await run_locked(database_url, _current)
    return result
