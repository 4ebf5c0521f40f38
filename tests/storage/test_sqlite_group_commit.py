"""SQLite: units of work whose only statement is a write that commits go to the writer
together, one hand-off and one COMMIT for all of them (`storage.sqlite_group_commit`).

Each caller hears of its write only once the batch has committed; a write that fails, or
says not to commit, takes nothing of the others with it; a COMMIT that fails fails them all
and keeps none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.ports import StorageError
from storage import create_storage, upgrade
from storage.sqlalchemy_storage import SqlStorage
from storage.sqlite_group_commit import GroupCommit
from tests.storage.conftest import Reported


@pytest.fixture
async def database(tmp_path: Path) -> Path:
    path = tmp_path / "intake.sqlite3"
    await upgrade(f"sqlite+aiosqlite:///{path}")
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute(
            "CREATE TABLE scratch (n INTEGER PRIMARY KEY, parent INTEGER REFERENCES scratch (n))"
        )
        connection.commit()
    return path


@pytest.fixture
async def storage(database: Path, reported: Reported) -> AsyncIterator[SqlStorage]:
    handle = await create_storage(f"sqlite+aiosqlite:///{database}", on_write_batch=reported)
    try:
        yield handle
    finally:
        await handle.close()


def committed(database: Path) -> list[int]:
    """The scratch rows another connection sees: only what was committed."""
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return [n for (n,) in connection.execute("SELECT n FROM scratch ORDER BY n")]


def insert(n: int, *, keep: bool = True) -> Callable[[sqlite3.Connection], tuple[int, bool]]:
    def write(connection: sqlite3.Connection) -> tuple[int, bool]:
        connection.execute("INSERT INTO scratch (n) VALUES (?)", (n,))
        return n, keep

    return write


def group(storage: SqlStorage) -> GroupCommit:
    assert isinstance(storage.group_commit, GroupCommit)
    return storage.group_commit


async def test_writes_queued_together_are_committed_together_and_answered_after(
    storage: SqlStorage, database: Path, reported: Reported
) -> None:
    writes = group(storage)

    async def one(n: int) -> None:
        assert await writes.run(insert(n)) == n
        assert n in committed(database)  # answered only once durable

    await asyncio.gather(*(one(n) for n in range(1, 21)))
    assert committed(database) == list(range(1, 21))
    assert writes.writes == 20
    assert writes.batches < 20  # the first went alone; the rest queued behind it went together
    assert len(reported) == writes.batches
    assert {outcome for _backend, outcome, _writes in reported} == {"committed"}
    assert sum(n for _backend, _outcome, n in reported) == 20


async def test_a_write_that_fails_or_declines_takes_nothing_of_the_others_with_it(
    storage: SqlStorage, database: Path, reported: Reported
) -> None:
    writes = group(storage)

    def fails_after_writing(connection: sqlite3.Connection) -> tuple[None, bool]:
        connection.execute("INSERT INTO scratch (n) VALUES (100)")
        raise ValueError("this write's own failure")

    results = await asyncio.gather(
        writes.run(insert(1)),
        writes.run(fails_after_writing),
        writes.run(insert(2, keep=False)),  # e.g. its revision check failed
        writes.run(insert(3)),
        return_exceptions=True,
    )
    assert results[0] == 1 and results[2] == 2 and results[3] == 3
    assert isinstance(results[1], ValueError)
    assert committed(database) == [1, 3]
    assert reported == [("sqlite", "committed", 4)]  # its own failures do not fail a batch


async def test_a_commit_that_fails_fails_every_write_of_its_batch_and_keeps_none(
    storage: SqlStorage, database: Path, reported: Reported
) -> None:
    writes = group(storage)
    await writes.run(insert(1))  # the writer is open, so the next three queue as one batch

    def breaks_the_commit(connection: sqlite3.Connection) -> tuple[None, bool]:
        # A foreign key checked only at COMMIT: the batch's commit fails as a whole.
        connection.execute("PRAGMA defer_foreign_keys = ON")
        connection.execute("INSERT INTO scratch (n, parent) VALUES (50, 999)")
        return None, True

    results = await asyncio.gather(
        writes.run(insert(2)),
        writes.run(breaks_the_commit),
        writes.run(insert(3)),
        return_exceptions=True,
    )
    assert all(isinstance(result, StorageError) for result in results), results
    assert committed(database) == [1]
    assert await writes.run(insert(4)) == 4  # the writer goes on afterwards
    assert committed(database) == [1, 4]
    assert reported == [
        ("sqlite", "committed", 1),
        ("sqlite", "failed", 3),
        ("sqlite", "committed", 1),
    ]


async def test_each_batch_reports_its_time_to_commit_a_stalled_one_all_of_it(
    storage: SqlStorage, reported: Reported
) -> None:
    """The time told of a batch runs from its leaving the queue to its outcome, the writer's
    work included: a batch held up on the writer (as by a disk's slow sync) says so, which
    is how an operator tells stalled commits from a slow server."""
    writes = group(storage)

    def stalls(connection: sqlite3.Connection) -> tuple[int, bool]:
        time.sleep(0.25)
        return insert(1)(connection)

    await writes.run(stalls)
    await writes.run(insert(2))
    assert reported == [("sqlite", "committed", 1), ("sqlite", "committed", 1)]
    assert reported.seconds[0] >= 0.25
    assert 0 < reported.seconds[1]


async def test_closing_the_storage_lets_a_batch_on_the_writer_finish(database: Path) -> None:
    """Its caller gone (cancelled as the process stops), the batch still holds the writer's
    connection: closing waits for it, so the connection goes back and is closed, not left to
    the garbage collector, and the write it had begun is committed."""
    storage = await create_storage(f"sqlite+aiosqlite:///{database}")
    begun = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow(connection: sqlite3.Connection) -> tuple[int, bool]:
        loop.call_soon_threadsafe(begun.set)
        time.sleep(0.3)
        return insert(7)(connection)

    caller = asyncio.create_task(group(storage).run(slow))
    await begun.wait()
    caller.cancel()
    await storage.close()
    assert committed(database) == [7]
    assert storage.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_unit_of_work_whose_first_statement_commits_goes_with_the_others(
    storage: SqlStorage, database: Path
) -> None:
    """Through the units of work: an outbox claim that commits by itself is one such write,
    and its unit of work never checks the connection out."""
    writes = group(storage)

    async def claim() -> None:
        async with storage.unit_of_work() as uow:
            assert await uow.outbox.claim("none", limit=1, lease_seconds=5, commit=True) == []
            assert uow.transaction is None

    await asyncio.gather(*(claim() for _ in range(10)))
    assert writes.writes == 10
    assert writes.batches < 10
    assert storage.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
