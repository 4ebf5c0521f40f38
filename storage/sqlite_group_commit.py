"""SQLite: the writes of many units of work committed together, in one hand-off to the writer.

SQLite has one writer, its single pooled connection, and every hand-off to it goes through
the event loop: a unit of work checks the connection out in turn, hands its statements to
aiosqlite's thread, waits for the loop to hear back, and gives the connection to the next in
line, who waits for the loop again. Under load the loop is busy with everything else in
flight, so the writer spent most of each turn waiting for it (about 1.4 ms of the writer's
time a turn at 730 turns/s, of which SQLite's own work and the WAL's sync were about 0.3).

A write that is the whole of its unit of work's database work (a turn that starts from what
this worker kept, `storage.turn_cache`: no read, the write and its commit) is queued here
instead. One drain at a time takes the connection as any unit of work does, in line
(`storage.db.Turnstile`), and hands every write queued meanwhile to the writer at once:
BEGIN IMMEDIATE, each write inside a savepoint of its own, one COMMIT. Each caller hears of
its own write only after that commit, so nothing is answered before it is durable:

- a write that says not to commit (its revision check or its message id test failed; it
  wrote nothing) is rolled back to its savepoint, and the others go on;
- a write that raises is rolled back to its savepoint and its caller gets the error; the
  others go on;
- if the COMMIT itself fails, every caller of the batch gets the error and nothing of the
  batch stays (the StorageError a caller turns into a 503 and a retry).

Turns of different conversations never conflict: each write's revision check runs on what the
batch's earlier writes left, so two turns of one conversation in one batch behave as two
commits in a row (the second is overtaken and runs again).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import PooledTransaction
from storage.errors import storage_errors
from storage.write_batches import BatchEvents, Outcome, WriteBatches

T = TypeVar("T")

#: A write: runs on the writer's thread inside the batch's transaction; its result, and
#: whether to keep what it wrote (False: rolled back to its savepoint).
Write = Callable[[sqlite3.Connection], tuple[Any, bool]]


class GroupCommit(WriteBatches[Write]):
    """The queue of writes for one SQLite engine (`storage.write_batches`)."""

    def __init__(self, engine: AsyncEngine, on_batch: BatchEvents | None = None) -> None:
        super().__init__("sqlite", on_batch)
        self._engine = engine

    async def run(self, write: Callable[[sqlite3.Connection], tuple[T, bool]]) -> T:
        """`write`'s result, once the batch it went in has committed (or its error)."""
        result: T = await self._queue(write)
        return result

    async def _write(self, batch: list[Write]) -> list[Outcome]:
        """The batch on the writer's thread in one hand-off: BEGIN IMMEDIATE, each write in a
        savepoint of its own, one COMMIT."""
        outcomes: list[Outcome] = []

        def run_batch(connection: sqlite3.Connection) -> tuple[None, bool]:
            for write in batch:
                connection.execute("SAVEPOINT write")
                try:
                    value, keep = write(connection)
                except Exception as error:  # this write's own failure: the others go on
                    connection.execute("ROLLBACK TO write")
                    connection.execute("RELEASE write")
                    outcomes.append((False, error))
                    continue
                if not keep:
                    connection.execute("ROLLBACK TO write")
                connection.execute("RELEASE write")
                outcomes.append((True, value))
            return None, True

        transaction = await PooledTransaction.begin(self._engine)
        try:
            with storage_errors():
                await transaction.run_sqlite_then_commit(run_batch)
        finally:
            await transaction.release()
        return outcomes
