"""The handle repositories share within one unit of work: a connection in a transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable

from bot.ports import StorageError
from storage.errors import storage_errors

try:  # asyncpg is optional at runtime (SQLite-only installs)
    import asyncpg

    #: What a statement on a pooled connection the server has dropped raises.
    _CONNECTION_LOST: tuple[type[BaseException], ...] = (
        OSError,
        asyncpg.ConnectionDoesNotExistError,
        asyncpg.AdminShutdownError,
    )
except ImportError:  # pragma: no cover
    _CONNECTION_LOST = (OSError,)

Clock = Callable[[], datetime]
#: More than a pool holds (storage.engine: 10 + 5 overflow): how many dead pooled connections
#: `Db.driver` replaces before it gives up.
MAX_DEAD_CONNECTIONS = 32
#: Replaces a pooled connection found dead by a unit of work's first statement.
Reconnect = Callable[[], Awaitable[AsyncConnection]]
T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Db:
    """Executes statements on one connection, translating failures to StorageError.

    `closed` is set when the unit of work ends, so a repository kept past its transaction fails
    loudly instead of silently opening a new one (the connection would autobegin).

    With `reconnect` (PostgreSQL, whose pool does not pre-ping), the first statement that finds
    the pooled connection dead (the server restarted, or dropped it while idle) runs again on a
    fresh connection. Nothing of the unit of work has happened yet at that point: the BEGIN
    goes out with the first statement, so there is nothing to lose and nothing done twice.

    `driver()` hands the turn's own statements the driver's connection (asyncpg, aiosqlite),
    inside the same transaction as everything run through `execute`: SQLAlchemy's
    per-statement work (greenlet hand-off, parameter and result processing, and on SQLite
    four hand-offs to aiosqlite's thread per statement) was the largest cost of a turn after
    the network (see BENCHMARKS.md, "Profile (2026-11-30)").
    """

    def __init__(
        self, connection: AsyncConnection, clock: Clock, reconnect: Reconnect | None = None
    ) -> None:
        self.connection = connection
        self.clock = clock
        self.closed = False
        self.is_postgres = connection.dialect.name == "postgresql"
        self._reconnect = reconnect
        #: The pooled connection's DBAPI adapter (SQLAlchemy's) and the driver's connection.
        self._adapter: Any = None
        self._driver: Any = None

    def now(self) -> datetime:
        return self.clock()

    async def execute(
        self,
        statement: Executable,
        parameters: Sequence[dict[str, Any]] | dict[str, Any] | None = None,
    ) -> CursorResult[Any]:
        if self.closed:
            raise StorageError("this unit of work has ended (committed or rolled back)")
        reconnect, self._reconnect = self._reconnect, None
        with storage_errors():
            try:
                return await self.connection.execute(statement, parameters)
            except sa_exc.DBAPIError as error:
                if reconnect is None or not error.connection_invalidated:
                    raise
                self.connection = await reconnect()
                return await self.connection.execute(statement, parameters)

    async def driver(self) -> Any:
        """The driver's connection of this unit of work, its transaction begun.

        SQLite: the aiosqlite connection, in the transaction the engine's BEGIN IMMEDIATE
        opened when the unit of work began (storage.engine). PostgreSQL: as follows.

        The asyncpg connection of this unit of work, its transaction begun (PostgreSQL).

        The transaction is the one SQLAlchemy tracks on its asyncpg adapter (`_transaction`,
        what its cursor starts lazily and what `commit()` and rollback end), so statements
        run here and through `execute` share it, and ending the unit of work ends it. If the
        BEGIN finds the pooled connection dead, the unit of work moves to a fresh connection
        as `execute` does; a server restart leaves every pooled connection dead, and each one
        met is invalidated (so dropped from the pool) until a live one answers. Failures come
        out as StorageError (`storage_errors`)."""
        if self.closed:
            raise StorageError("this unit of work has ended (committed or rolled back)")
        if not self.is_postgres:
            if self._driver is None:
                with storage_errors():
                    fairy = await self._pooled()
                self._driver = fairy.driver_connection
            return self._driver
        reconnect = None
        with storage_errors():
            for _attempt in range(MAX_DEAD_CONNECTIONS):
                if self._driver is None:
                    fairy = await self._pooled()
                    self._adapter, self._driver = fairy.dbapi_connection, fairy.driver_connection
                adapter = self._adapter
                if adapter._transaction is not None or adapter.isolation_level == "autocommit":
                    self._reconnect = None  # something already ran: a failure is the turn's
                    return self._driver
                reconnect = reconnect or self._reconnect
                self._reconnect = None
                try:
                    await _begin(adapter, self._driver)
                    return self._driver
                except Exception as error:
                    lost = isinstance(error, _CONNECTION_LOST) or self._driver.is_closed()
                    if reconnect is None or not lost:
                        raise
                self.connection = await reconnect()
                self._adapter = self._driver = None
        raise StorageError("no live database connection after replacing every dead one")

    async def _pooled(self) -> Any:
        """The pooled DBAPI connection this unit of work holds. Already checked out and valid
        (the unit of work has begun), so read without the greenlet hand-off that
        `get_raw_connection()` makes in case it had to reconnect."""
        sync = self.connection.sync_connection
        if sync is not None and not sync.invalidated and not sync.closed:
            return sync.connection
        return await self.connection.get_raw_connection()

    def insert_or_ignore(self, table: Table) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING: a duplicate shows as rowcount 0 instead of an
        error, which on PostgreSQL would abort the whole transaction."""
        dialect_insert = postgresql.insert if self.is_postgres else sqlite.insert
        return dialect_insert(table).on_conflict_do_nothing()


async def _begin(adapter: Any, driver: Any) -> None:
    """What SQLAlchemy's asyncpg adapter does before its first statement
    (`AsyncAdapt_asyncpg_connection._start_transaction`), with the driver's own errors."""
    transaction = driver.transaction(
        isolation=adapter.isolation_level, readonly=adapter.readonly, deferrable=adapter.deferrable
    )
    await transaction.start()
    adapter._transaction = transaction


async def on_live_connection(
    engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]]
) -> T:
    """Run a read on a pooled connection; if that connection turns out dead, once more on a
    fresh one (the pool marks every older connection stale after a disconnect, so the second
    checkout connects anew). For reads outside a unit of work: ping, the directory."""
    with storage_errors():
        try:
            async with engine.connect() as connection:
                return await work(connection)
        except sa_exc.DBAPIError as error:
            if not error.connection_invalidated:
                raise
        async with engine.connect() as connection:
            return await work(connection)
