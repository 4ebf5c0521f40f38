"""PostgreSQL: the writes of many units of work sent together, in one round trip and one commit.

A turn that starts from what this worker kept (`storage.turn_cache`) has one statement, its
write, which commits by itself (`storage.turns`, `COMMIT_POINT_MARK`); a new conversation's
first statement is the same; a turn that read outside a transaction has only its write left
once the read handed its connection back (`storage.db.Db.hand_back`). Sent alone, each write
pays a connection checked out, a round trip, PostgreSQL's per-transaction work (the
snapshot, the WAL flush of its commit) and asyncpg's per-call work: measured with the turn's
own statement and 50 conversations on this machine, about 125 µs of the client's CPU and 235
of PostgreSQL's a turn, against 18 and 65 when 50 go together (BENCHMARKS.md).

Such a write is queued here instead of running on the unit of work's own connection (the unit
of work then never checks one out). One drain at a time checks a connection out, in line with
the units of work (`storage.db.Turnstile`), and sends every write queued meanwhile (at most
`storage.write_batches.MAX_BATCH`): the writes of one statement text go as one `fetchmany` (asyncpg's pipeline:
each write its own Bind and Execute, one Sync, so one implicit transaction and one commit);
another text goes as another. Each caller hears of its own write only after that commit:

- Under READ COMMITTED every statement of the pipeline takes its own snapshot, which sees what
  the earlier ones wrote; so a write's revision check and its message id test run on what the
  batch's earlier writes left, and two turns of one conversation in one batch behave as two
  commits in a row (the second is overtaken and runs again). A write that declines (its
  checks failed: it wrote nothing) is answered with its row, as alone.
- A write that fails on the server (a reply kept for its message id meanwhile: a unique
  violation; refused data; a deadlock) fails the whole pipeline, which PostgreSQL rolls back:
  every write of it is then sent again alone, so each caller gets its own write's outcome.
- A connection lost under the pipeline fails every write of it (StorageError: the web answers
  503 and the client retries; a retry of a write that did commit finds the reply kept for its
  message id), as a write alone would.

Row locks taken by a batch's updates are held until its commit, a little longer than alone;
a write that waits for a lock (a conversation that a report's transaction holds) holds up the
writes behind it for that long.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.ports import StorageError
from storage.db import PooledTransaction
from storage.errors import storage_errors
from storage.write_batches import BatchEvents, Outcome, WriteBatches

try:  # asyncpg is optional at runtime (SQLite-only installs)
    import asyncpg

    #: What the server refused, the connection still good.
    _REFUSED: tuple[type[BaseException], ...] = (asyncpg.PostgresError,)
except ImportError:  # pragma: no cover
    _REFUSED = ()

#: A queued write: the statement and its arguments.
_Statement = tuple[str, Sequence[Any]]


class PgGroupCommit(WriteBatches[_Statement]):
    """The queue of writes for one PostgreSQL engine (`storage.write_batches`)."""

    def __init__(self, engine: AsyncEngine, on_batch: BatchEvents | None = None) -> None:
        super().__init__("postgresql", on_batch)
        self._engine = engine

    async def run(self, statement: str, args: Sequence[Any]) -> Any:
        """The one row that `statement` (a write that commits by itself) returns with `args`,
        once the batch it went in has committed (or its error)."""
        return await self._queue((statement, args))

    async def _write(self, batch: list[_Statement]) -> list[Outcome]:
        """Every write of `batch` on one connection, a pipeline per statement text, in the
        order queued within each; outcomes in `batch`'s order."""
        transaction = await PooledTransaction.begin(self._engine)
        try:
            if transaction.driver.is_closed():
                await transaction.replace()  # closed while idle in the pool: nothing sent yet
            driver = transaction.driver
            by_statement: dict[str, list[int]] = {}
            for index, (statement, _args) in enumerate(batch):
                by_statement.setdefault(statement, []).append(index)
            outcomes: dict[int, Outcome] = {}
            for statement, indexes in by_statement.items():
                results = await self._pipeline(driver, statement, [batch[i][1] for i in indexes])
                outcomes.update(zip(indexes, results, strict=True))
        finally:
            transaction.done = True  # autocommit statements: nothing to roll back
            await transaction.release()
        return [outcomes[index] for index in range(len(batch))]

    async def _pipeline(
        self, driver: Any, statement: str, arguments: list[Sequence[Any]]
    ) -> list[Outcome]:
        if len(arguments) > 1:
            try:
                with storage_errors():
                    rows = await driver.fetchmany(statement, arguments)
            except Exception as error:
                if not isinstance(error.__cause__ or error, _REFUSED):
                    return [(False, error)] * len(arguments)  # the connection: all are lost
                self.split += 1  # one of them failed on the server and took the others with it
            else:
                if len(rows) != len(arguments):
                    raise StorageError(f"{len(rows)} rows for {len(arguments)} writes")
                return [(True, row) for row in rows]
        return [await _alone(driver, statement, args) for args in arguments]


async def _alone(driver: Any, statement: str, args: Sequence[Any]) -> Outcome:
    try:
        with storage_errors():
            return True, await driver.fetchrow(statement, *args)
    except Exception as error:  # this write's own failure, for its caller
        return False, error
