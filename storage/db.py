"""The handle repositories share within one unit of work: a connection in a transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

from bot.ports import StorageError
from storage.errors import storage_errors

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Db:
    """Executes statements on one connection, translating failures to StorageError.

    `closed` is set when the unit of work ends, so a repository kept past its transaction fails
    loudly instead of silently opening a new one (the connection would autobegin).
    """

    def __init__(self, connection: AsyncConnection, clock: Clock) -> None:
        self.connection = connection
        self.clock = clock
        self.closed = False
        self.is_postgres = connection.dialect.name == "postgresql"

    def now(self) -> datetime:
        return self.clock()

    async def execute(
        self,
        statement: Executable,
        parameters: Sequence[dict[str, Any]] | dict[str, Any] | None = None,
    ) -> CursorResult[Any]:
        if self.closed:
            raise StorageError("this unit of work has ended (committed or rolled back)")
        with storage_errors():
            return await self.connection.execute(statement, parameters)

    def insert_or_ignore(self, table: Table) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING: a duplicate shows as rowcount 0 instead of an
        error, which on PostgreSQL would abort the whole transaction."""
        dialect_insert = postgresql.insert if self.is_postgres else sqlite.insert
        return dialect_insert(table).on_conflict_do_nothing()
