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

Clock = Callable[[], datetime]
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
    """

    def __init__(
        self, connection: AsyncConnection, clock: Clock, reconnect: Reconnect | None = None
    ) -> None:
        self.connection = connection
        self.clock = clock
        self.closed = False
        self.is_postgres = connection.dialect.name == "postgresql"
        self._reconnect = reconnect

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

    def insert_or_ignore(self, table: Table) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING: a duplicate shows as rowcount 0 instead of an
        error, which on PostgreSQL would abort the whole transaction."""
        dialect_insert = postgresql.insert if self.is_postgres else sqlite.insert
        return dialect_insert(table).on_conflict_do_nothing()


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
