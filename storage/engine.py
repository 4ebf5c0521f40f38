"""Engine creation: the pool and session settings that make each backend safe.

SQLite: one connection (a single writer) that begins every transaction with BEGIN IMMEDIATE.
A pool of writers, or a deferred BEGIN that later upgrades to a write lock, ends in
"database is locked" under concurrency; queuing on a pool of one never does. WAL lets readers
of other processes (the CLI) read meanwhile, and `synchronous=FULL` keeps a committed report
across a power cut.

PostgreSQL: asyncpg, READ COMMITTED (row locks serialize what must be serialized), and a
bounded connect timeout so that /readyz answers quickly while the database is down.
A database that hangs rather than goes away (its network frozen) must not hold requests either:
serving engines set every timeout to a few seconds (`REQUEST_TIMEOUTS`): a statement (on the
server, and on the client for a server that does not answer at all), a lock wait, a session
idle inside a transaction (so a worker stuck mid-turn loses its row lock within seconds and
another worker can serve the conversation), a free pooled connection; and TCP keepalives on
both ends. Then the unit of work fails with StorageError, which the API answers with 503 and
Retry-After; the turn was rolled back, or committed and is replayed for its message id, so a
retry loses nothing and doubles nothing. Migrations run without them (they may wait for the
migration lock, or build an index, for longer). No
pre-ping: it would cost a round trip on every checkout, about a fifth of a turn's. Instead a
unit of work whose first statement finds its pooled connection dead (the database restarted
or dropped it while idle) runs that statement again on a fresh connection (storage.db.Db), and
reads outside a unit of work do the same (`on_live_connection`); after one such disconnect
the pool reconnects every older connection at its next checkout.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from storage.coltypes import json_text

#: The SQLite database file, and its directory when we create it: this user only.
SQLITE_FILE_MODE = 0o600
SQLITE_DIRECTORY_MODE = 0o700
#: How long a statement waits for SQLite's write lock held by another process (the CLI).
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: How long to wait for a PostgreSQL connection before reporting the database as down.
CONNECT_TIMEOUT_SECONDS = 3.0
#: How long a unit of work waits for a free pooled connection.
POOL_TIMEOUT_SECONDS = 30.0
#: Set in a pooled SQLite connection's `info` while a unit of work holds it with its BEGIN
#: IMMEDIATE already sent (`storage.db.PooledTransaction`): the "begin" listener below then
#: sends none when SQLAlchemy autobegins on the same connection.
SQLITE_BEGUN = "intake_sqlite_begun"


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long a serving worker lets PostgreSQL take before it answers 503."""

    #: A statement, on the server (`statement_timeout`).
    statement_ms: int = 3_000
    #: A statement on the client, for a server that does not answer at all (asyncpg's
    #: `command_timeout`); a little longer than the server's, whose error is clearer. Closing
    #: the stuck connection then takes up to 2 s more (SQLAlchemy's graceful close), so a
    #: request gives up within about 6 s.
    command_seconds: float = 4.0
    #: Waiting for a row lock (`lock_timeout`): another worker's turn takes milliseconds.
    lock_ms: int = 2_000
    #: A session idle inside a transaction (`idle_in_transaction_session_timeout`): a turn
    #: never pauses that long between statements, so such a session is stuck; the server ends
    #: it and releases its locks.
    idle_in_transaction_ms: int = 5_000
    #: Waiting for a free pooled connection.
    pool_seconds: float = 2.0
    #: TCP keepalives, both ends: probe after this many idle seconds, then every
    #: `keepalive_interval` seconds, `keepalive_count` times.
    keepalive_idle: int = 10
    keepalive_interval: int = 5
    keepalive_count: int = 3

    def server_settings(self) -> dict[str, str]:
        return {
            "statement_timeout": str(self.statement_ms),
            "lock_timeout": str(self.lock_ms),
            "idle_in_transaction_session_timeout": str(self.idle_in_transaction_ms),
            "tcp_keepalives_idle": str(self.keepalive_idle),
            "tcp_keepalives_interval": str(self.keepalive_interval),
            "tcp_keepalives_count": str(self.keepalive_count),
        }


REQUEST_TIMEOUTS = Timeouts()


class KeepaliveConnection(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection whose socket sends TCP keepalives (asyncpg has no option)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        sock = self._transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            set_keepalive(sock, REQUEST_TIMEOUTS)


def set_keepalive(sock: Any, timeouts: Timeouts) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", timeouts.keepalive_idle),
        ("TCP_KEEPINTVL", timeouts.keepalive_interval),
        ("TCP_KEEPCNT", timeouts.keepalive_count),
    ):
        option = getattr(socket, name, None)
        if option is not None:  # Linux has all three; others may not
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


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
    """Create the SQLite file's directory (e.g. ./var/) so zero setup means zero setup, and
    the file itself, both readable by this user only: the database holds what people told us
    about their care. SQLite gives its -wal and -shm files the database file's permissions."""
    path = sqlite_path(url)
    if path is None:
        return
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=SQLITE_DIRECTORY_MODE)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SQLITE_FILE_MODE)
    except FileExistsError:
        return
    os.close(descriptor)  # an empty file is an empty SQLite database


#: PostgreSQL: the most connections a pool holds by default, a serving worker's turns' too
#: unless INTAKE_DATABASE_CONNECTIONS is set (`storage.sqlalchemy_storage.serving_pool_size`).
#: They are opened as needed, one at a time (`storage.db.Turnstile`), and then kept, with no
#: overflow: an overflow connection is closed when it comes back to a full pool, so under
#: bursts of work (submissions arrive together, a Telegram burst) the pool opened and closed
#: connections several times a second, and each new one paid the TLS handshake, the
#: driver's type set-up and the preparation of every statement again. That stalled the
#: worker's event loop for 100-600 ms every few seconds at 700 turns/s (136 backends in 70 s;
#: with the same 15 kept: 23 in all, p99 108 -> 28 ms, BENCHMARKS.md "Connections kept").
POOL_SIZE = 15


def create_engine(
    database_url: str | URL,
    *,
    pool_size: int = POOL_SIZE,
    max_overflow: int = 0,
    timeouts: Timeouts | None = REQUEST_TIMEOUTS,
) -> AsyncEngine:
    """An engine for serving (`timeouts` of a few seconds) or, with `timeouts=None`, for
    migrations and other administration that may legitimately wait longer. On PostgreSQL the
    pool opens up to `pool_size` connections as they are needed and keeps them (see
    `POOL_SIZE`; `max_overflow` more would be closed again after each burst); SQLite has one
    connection whatever is asked."""
    url = normalize_url(database_url)
    if is_sqlite(url):
        return _sqlite_engine(url)
    return _postgres_engine(url, pool_size=pool_size, max_overflow=max_overflow, timeouts=timeouts)


def _sqlite_engine(url: URL) -> AsyncEngine:
    engine = create_async_engine(
        url,
        poolclass=AsyncAdaptedQueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        # A SQLite connection is a file handle in this process: nothing at the other end can
        # drop it, so a ping on every checkout (four hand-offs to aiosqlite's thread) buys
        # nothing. An unusable file fails the unit of work's BEGIN instead, as StorageError.
        pool_pre_ping=False,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        # JSON columns written through SQLAlchemy get the same text as the driver's own
        # statements (`storage.turns`, `storage.outbox`): one encoding of stored JSON.
        json_serializer=json_text,
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
        # cannot wait for the lock and fails with SQLITE_BUSY instead. Sent on the driver's
        # connection (one hand-off to aiosqlite's thread; through a SQLAlchemy cursor it
        # took four), on every transaction not begun already by a unit of work.
        if connection.info.get(SQLITE_BEGUN):
            return
        connection.connection.dbapi_connection.run_async(_begin_immediate)

    return engine


async def _begin_immediate(driver: Any) -> None:
    await driver.execute("BEGIN IMMEDIATE")


def _postgres_engine(
    url: URL, *, pool_size: int, max_overflow: int, timeouts: Timeouts | None
) -> AsyncEngine:
    connect_args: dict[str, Any] = {"timeout": CONNECT_TIMEOUT_SECONDS}
    server_settings: dict[str, str] = {}
    if timeouts is not None:
        connect_args["command_timeout"] = timeouts.command_seconds
        connect_args["connection_class"] = KeepaliveConnection
        server_settings.update(timeouts.server_settings())
    # `?search_path=...` selects a schema (tests use one per test) and `?application_name=...`
    # names the workers in pg_stat_activity. asyncpg takes both as server settings, not as
    # connect() keywords, so move them there.
    for name in SERVER_SETTINGS_IN_URL:
        value = url.query.get(name)
        if value is not None:
            server_settings[name] = value if isinstance(value, str) else ",".join(value)
    in_url = [name for name in SERVER_SETTINGS_IN_URL if name in url.query]
    if in_url:
        url = url.difference_update_query(in_url)
    if server_settings:
        connect_args["server_settings"] = server_settings
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=timeouts.pool_seconds if timeouts is not None else POOL_TIMEOUT_SECONDS,
        pool_pre_ping=False,
        pool_recycle=1800,
        # The connection handed back last is the next one out: under light load a worker
        # keeps using the few it needs, hot, instead of taking each of up to 50 in turn
        # (`serving_pool_size`). Taking them in turn made the Telegram open loop's p99 35.5
        # and 89.3 ms where it was 22.6 and 31.8 ms with 15; last in, first out, 25.7 and
        # 28.7 ms (BENCHMARKS.md).
        pool_use_lifo=True,
        isolation_level="READ COMMITTED",
        connect_args=connect_args,
        json_serializer=json_text,  # as for SQLite above
    )
