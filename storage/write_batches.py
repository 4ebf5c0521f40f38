"""The queue that lone writes wait in to be committed together, one batch at a time.

A unit of work whose only database work is one write that commits (storage.db.Db's
`run_sqlite_then_commit`, `commit_statement`) hands it to its storage's queue instead of
checking a connection out. One drain task at a time takes the writes queued so far (at most
`MAX_BATCH`) and commits them together, as the backend allows (`storage.sqlite_group_commit`,
`storage.pg_group_commit`); each caller is answered only after that commit, with its own
write's outcome, or with the batch's error if the batch as a whole failed.

Each batch is also reported to the storage's `BatchEvents` (the service counts them as
Prometheus metrics: how many writes go together, how many batches fail or are split, and how
long each took to commit), so that an operator can see the batching work, or stop working,
in production, and tell a database whose commits stall (a disk's slow sync holds up every
turn in the batch and behind it) from a server that is slow itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from bot.ports import ConcurrencyError, DuplicateError, StorageError

W = TypeVar("W")

#: At most this many writes go in one batch, so that a unit of work in line behind a long
#: queue of writes (a report, a staff action) waits for one batch, not for the queue.
MAX_BATCH = 64

#: A write's outcome: (True, its result) or (False, the error its caller gets).
Outcome = tuple[bool, Any]

#: Told of every batch written: (backend, outcome, writes in it, seconds from the batch
#: leaving the queue to its outcome: the connection waited for, the statements, the commit
#: and its sync). The outcome is
#: "failed" (the database failed or went away: every caller got a StorageError, nothing of
#: the batch committed, or not known to have; they may retry), "split" (the server refused a
#: write of it, so each was sent again alone: `storage.pg_group_commit`) or "committed"
#: (together; a write may still have failed or declined on its own, as it would alone).
#: Called on the event loop; must not raise.
BatchEvents = Callable[[str, str, int, float], None]


class WriteBatches(Generic[W]):
    """One storage's queue of writes (`W`: what a backend needs to run one), drained by one
    task at a time. A backend says how a batch is written (`_write`)."""

    def __init__(self, backend: str, on_batch: BatchEvents | None = None) -> None:
        self._queued: list[tuple[W, asyncio.Future[Any]]] = []
        self._draining: asyncio.Task[None] | None = None
        self._backend = backend
        self._on_batch = on_batch
        #: Batches committed and writes in them: for tests and the bench.
        self.batches = 0
        self.writes = 0
        #: Batches sent again write by write (one write refused): a backend that can split
        #: counts them (`storage.pg_group_commit`).
        self.split = 0

    async def _queue(self, write: W) -> Any:
        """`write`'s result once the batch it went in has committed, or its error."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((write, future))
        if self._draining is None:
            self._draining = asyncio.ensure_future(self._drain())
        return await future

    async def _write(self, batch: list[W]) -> list[Outcome]:
        """Write and commit `batch`: each write's outcome, in order. Raises if the batch as a
        whole failed (nothing of it committed, or not known to have)."""
        raise NotImplementedError

    async def finish(self) -> None:
        """Wait until every write queued or in flight has been answered (before the engine is
        disposed: a batch in flight holds a connection)."""
        while (draining := self._draining) is not None:
            await asyncio.wait({draining})

    async def _drain(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued[:MAX_BATCH], self._queued[MAX_BATCH:]
                await self._commit(batch)
        except BaseException:
            # Cancelled (the process is stopping): no write queued is answered.
            for _write, future in self._queued:
                _fail(future, StorageError("the database writer stopped"))
            self._queued = []
            raise
        finally:
            self._draining = None

    async def _commit(self, batch: list[tuple[W, asyncio.Future[Any]]]) -> None:
        """One batch: each write's outcome to its caller, or the batch's error to all of them.
        Raises only if cancelled."""
        split_before = self.split
        started = time.perf_counter()
        try:
            outcomes = await self._write([write for write, _future in batch])
        except Exception as error:
            self._report("failed", len(batch), started)
            for _write, future in batch:
                _fail(future, error)
            return
        except BaseException:
            # Cancelled (the process is stopping) with the batch perhaps already sent, where
            # it may still commit: its callers are told it failed, and a retry finds what did
            # commit (a message id's reply is kept with its turn).
            for _write, future in batch:
                _fail(future, StorageError("the database writer stopped"))
            raise
        self.batches += 1
        self.writes += len(batch)
        if all(not ok and _unavailable(value) for ok, value in outcomes):
            self._report("failed", len(batch), started)
        else:
            outcome = "split" if self.split != split_before else "committed"
            self._report(outcome, len(batch), started)
        for (_write, future), (ok, value) in zip(batch, outcomes, strict=True):
            if future.done():
                continue  # its caller was cancelled meanwhile; the write stands, as any commit
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _report(self, outcome: str, writes: int, started: float) -> None:
        """`started`: `time.perf_counter()` when the batch left the queue."""
        if self._on_batch is not None:
            self._on_batch(self._backend, outcome, writes, time.perf_counter() - started)


def _unavailable(error: BaseException) -> bool:
    """The database failed or went away (not a write's own duplicate key or lost race)."""
    return isinstance(error, StorageError) and not isinstance(
        error, DuplicateError | ConcurrencyError
    )


def _fail(future: asyncio.Future[Any], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
