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

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.ports import StorageError
from storage.db import PooledTransaction
from storage.errors import storage_errors

T = TypeVar("T")

#: A write: runs on the writer's thread inside the batch's transaction; its result, and
#: whether to keep what it wrote (False: rolled back to its savepoint).
Write = Callable[[sqlite3.Connection], tuple[Any, bool]]

#: At most this many writes go in one batch, so that a unit of work in line behind a long
#: queue of writes (a report, a staff action) waits for one batch, not for the queue.
MAX_BATCH = 64


class GroupCommit:
    """The queue of writes for one SQLite engine, drained by one task at a time."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._queued: list[tuple[Write, asyncio.Future[Any]]] = []
        self._draining: asyncio.Task[None] | None = None
        #: Batches committed and writes in them: for tests and the bench.
        self.batches = 0
        self.writes = 0

    async def run(self, write: Callable[[sqlite3.Connection], tuple[T, bool]]) -> T:
        """`write`'s result, once the batch it went in has committed (or its error)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((write, future))
        if self._draining is None:
            self._draining = asyncio.ensure_future(self._drain())
        result: T = await future
        return result

    async def finish(self) -> None:
        """Wait until every write queued or in flight has been committed or failed (before the
        engine is disposed: a batch on the writer holds its connection)."""
        while (draining := self._draining) is not None:
            await asyncio.wait({draining})

    async def _drain(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued[:MAX_BATCH], self._queued[MAX_BATCH:]
                await self._commit(batch)
        except BaseException:
            # Cancelled (the process is stopping): no write queued or in flight is answered.
            for _write, future in self._queued:
                _fail(future, StorageError("the database writer stopped"))
            self._queued = []
            raise
        finally:
            self._draining = None

    async def _commit(self, batch: list[tuple[Write, asyncio.Future[Any]]]) -> None:
        """One batch: its writes' outcomes to their callers once committed, or the batch's
        error to all of them. Raises only if cancelled."""
        outcomes: list[tuple[bool, Any]] = []

        def run_batch(connection: sqlite3.Connection) -> tuple[None, bool]:
            for write, _future in batch:
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

        try:
            transaction = await PooledTransaction.begin(self._engine)
            try:
                with storage_errors():
                    await transaction.run_sqlite_then_commit(run_batch)
            finally:
                await transaction.release()
        except Exception as error:
            for _write, future in batch:
                _fail(future, error)
            return
        except BaseException:
            # Cancelled (the process is stopping) with the batch perhaps already on the
            # writer's thread, where it may still commit: its callers are told it failed, and
            # a retry finds what did commit (a message id's reply is kept with its turn).
            for _write, future in batch:
                _fail(future, StorageError("the database writer stopped"))
            raise
        self.batches += 1
        self.writes += len(batch)
        for (_write, future), (ok, value) in zip(batch, outcomes, strict=True):
            if future.done():
                continue  # its caller was cancelled meanwhile; the write stands, as any commit
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


def _fail(future: asyncio.Future[Any], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
