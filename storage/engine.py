"""Engine creation: the pool and session settings that make each backend safe.

SQLite: one connection (a single writer) that begins every transaction with BEGIN IMMEDIATE.
A pool of writers, or a deferred BEGIN that later upgrades to a write lock, ends in
"database is locked" under concurrency; queuing on a pool of one never does. WAL lets readers
of other processes (the CLI) read meanwhile, and `synchronous=FULL` keeps a committed report
across a power cut.

PostgreSQL: asyncpg, READ COMMITTED (row locks serialize what must be serialized), and a
bounded connect timeout so that /readyz answers quickly while the database is down. No
pre-ping: it would cost a round trip on every checkout, about a fifth of a turn's. Instead a
unit of work whose first statement finds its pooled connection dead (the database restarted
or dropped it while idle) runs that statement again on a fresh connection (storage.db.Db), and
reads outside a unit of work do the same (`on_live_connection`); after one such disconnect
the pool reconnects every older connection at its next checkout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

#: How long a statement waits for SQLite's write lock held by another process (the CLI).
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: How long to wait for a PostgreSQL connection before reporting the database as down.
CONNECT_TIMEOUT_SECONDS = 5.0
#: How long a unit of work waits for a free pooled connection.
POOL_TIMEOUT_SECONDS = 30.0

#: PostgreSQL URL query parameters passed to the server as settings.
SERVER_SETTINGS_IN_URL = ("search_path", "application_name")

_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite", "sqlite+aiosqlite"}
_POSTGRES_DRIVERS = {
    "postgres",
    "postgresql",
    "postgresql+psycopg",
    "postgresql+psycopg2",
    "postgresql+asyncpg",
}


def normalize_url(database_url: str | URL) -> URL:
    """Accept plain `sqlite:///` and `postgresql://` URLs and pick the async driver."""
    url = make_url(database_url)
    if url.drivername in _SQLITE_DRIVERS:
        return url.set(drivername="sqlite+aiosqlite")
    if url.drivername in _POSTGRES_DRIVERS:
        return url.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database URL scheme {url.drivername!r} (sqlite or postgresql)")


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None for an in-memory database."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def ensure_sqlite_directory(url: URL) -> None:
    """Create the SQLite file's directory (e.g. ./var/) so zero setup means zero setup."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def create_engine(database_url: str | URL, *, pool_size: int = 10) -> AsyncEngine:
    url = normalize_url(database_url)
    if is_sqlite(url):
        return _sqlite_engine(url)
    return _postgres_engine(url, pool_size=pool_size)


def _sqlite_engine(url: URL) -> AsyncEngine:
    engine = create_async_engine(
        url,
        poolclass=AsyncAdaptedQueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        pool_pre_ping=True,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver: we emit our own BEGIN below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Take the write lock up front: a deferred transaction that reads and then writes
        # cannot wait for the lock and fails with SQLITE_BUSY instead.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _postgres_engine(url: URL, *, pool_size: int) -> AsyncEngine:
    connect_args: dict[str, Any] = {"timeout": CONNECT_TIMEOUT_SECONDS}
    # `?search_path=...` selects a schema (tests use one per test) and `?application_name=...`
    # names the workers in pg_stat_activity. asyncpg takes both as server settings, not as
    # connect() keywords, so move them there.
    server_settings: dict[str, str] = {}
    for name in SERVER_SETTINGS_IN_URL:
        value = url.query.get(name)
        if value is not None:
            server_settings[name] = value if isinstance(value, str) else ",".join(value)
    if server_settings:
        url = url.difference_update_query(list(server_settings))
        connect_args["server_settings"] = server_settings
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size // 2,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        pool_pre_ping=False,
        pool_recycle=1800,
        isolation_level="READ COMMITTED",
        connect_args=connect_args,
    )
