"""PostgreSQL: units of work whose only statement is a write that commits by itself go to the
server together, one pipeline and one commit for all of them (`storage.pg_group_commit`).

Each caller hears of its write only once the batch has committed; a write the server refuses
takes nothing of the others with it (they are sent again, each alone); a connection lost
under a batch fails all of its writes and keeps none.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bot.ports import DuplicateError, StorageError
from storage import create_storage, upgrade
from storage.db import COMMIT_POINT_MARK
from storage.pg_group_commit import PgGroupCommit
from storage.sqlalchemy_storage import SqlStorage
from tests.storage.conftest import Reported

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]

#: Writes n if asked to ($2), as a turn writes only if its checks pass; says whether it did.
#: Refused (a check violation) for n < 0; a unique violation for an n already there.
WRITE = (
    COMMIT_POINT_MARK
    + """
    WITH written AS (INSERT INTO scratch (n) SELECT $1::integer WHERE $2::boolean RETURNING n)
    SELECT count(*) AS written FROM written"""
)
#: The same, holding its connection for $3 seconds first.
SLOW_WRITE = WRITE.replace("SELECT count(*)", "SELECT pg_sleep($3::float8), count(*)")


async def _connect(database_url: str) -> asyncpg.Connection:
    schema = make_url(database_url).query["search_path"]
    url = make_url(database_url).set(drivername="postgresql", query={})
    return await asyncpg.connect(
        url.render_as_string(False), server_settings={"search_path": str(schema)}
    )


async def _with_scratch(database_url: str) -> None:
    """The schema migrated, and a table of the tests' own to write in."""
    await upgrade(database_url)
    admin = await _connect(database_url)
    try:
        await admin.execute("CREATE TABLE scratch (n integer PRIMARY KEY CHECK (n >= 0))")
    finally:
        await admin.close()


@pytest.fixture
async def storage(database_url: str, reported: Reported) -> AsyncIterator[SqlStorage]:
    await _with_scratch(database_url)
    handle = await create_storage(database_url, on_write_batch=reported)
    try:
        yield handle
    finally:
        await handle.close()


async def committed(database_url: str) -> list[int]:
    """The scratch rows another connection sees: only what was committed."""
    connection = await _connect(database_url)
    try:
        return [row["n"] for row in await connection.fetch("SELECT n FROM scratch ORDER BY n")]
    finally:
        await connection.close()


def group(storage: SqlStorage) -> PgGroupCommit:
    assert isinstance(storage.group_commit, PgGroupCommit)
    return storage.group_commit


async def write(writes: PgGroupCommit, n: int, *, keep: bool = True) -> int:
    row = await writes.run(WRITE, (n, keep))
    return int(row["written"])


async def test_writes_queued_together_are_committed_together_and_answered_after(
    storage: SqlStorage, database_url: str, reported: Reported
) -> None:
    writes = group(storage)

    async def one(n: int) -> None:
        assert await write(writes, n) == 1
        assert n in await committed(database_url)  # answered only once durable

    await asyncio.gather(*(one(n) for n in range(1, 21)))
    assert await committed(database_url) == list(range(1, 21))
    assert writes.writes == 20
    assert writes.batches < 20 and writes.split == 0
    assert storage.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert len(reported) == writes.batches
    assert {outcome for _backend, outcome, _writes in reported} == {"committed"}
    assert sum(n for _backend, _outcome, n in reported) == 20


async def test_a_write_refused_takes_nothing_of_the_others_with_it(
    storage: SqlStorage, database_url: str, reported: Reported
) -> None:
    """The pipeline fails as a whole and PostgreSQL keeps none of it; each write is then sent
    alone, so each caller gets its own outcome: a unique violation is a DuplicateError (a
    message id's reply kept meanwhile), refused data its own error, a write that declined
    (its checks failed) its row."""
    writes = group(storage)
    results = await asyncio.gather(
        write(writes, 1),
        write(writes, 1),  # the same key again
        write(writes, 2, keep=False),
        write(writes, -5),  # refused: the CHECK
        write(writes, 3),
        return_exceptions=True,
    )
    assert results[0] == 1 and results[2] == 0 and results[4] == 1, results
    assert isinstance(results[1], DuplicateError), results
    assert isinstance(results[3], asyncpg.CheckViolationError), results
    assert writes.batches == 1 and writes.split == 1
    assert await committed(database_url) == [1, 3]
    assert reported == [("postgresql", "split", 5)]


async def test_a_write_that_fails_on_its_own_is_not_a_failed_batch(
    storage: SqlStorage, reported: Reported
) -> None:
    """A batch fails when the database does; a lone write's duplicate key (a message id's
    reply kept meanwhile) is that write's outcome, in a batch that went through."""
    writes = group(storage)
    assert await write(writes, 1) == 1
    with pytest.raises(DuplicateError):
        await write(writes, 1)
    assert reported == [("postgresql", "committed", 1), ("postgresql", "committed", 1)]


async def test_each_batch_reports_its_time_to_commit_a_stalled_one_all_of_it(
    storage: SqlStorage, reported: Reported
) -> None:
    """The time told of a batch runs from its leaving the queue to its outcome, the server's
    work included: a batch held up on the server says so."""
    writes = group(storage)
    row = await writes.run(SLOW_WRITE, (1, True, 0.25))
    assert row["written"] == 1
    assert await write(writes, 2) == 1
    assert reported == [("postgresql", "committed", 1), ("postgresql", "committed", 1)]
    assert reported.seconds[0] >= 0.25
    assert 0 < reported.seconds[1]


async def _backend(writes: PgGroupCommit) -> int:
    """The server process of the connection the batches use: the pool hands out the one
    handed back last (`pool_use_lifo`), so the next batch's too."""
    row = await writes.run(COMMIT_POINT_MARK + "SELECT pg_backend_pid() AS pid", ())
    return int(row["pid"])


async def test_a_connection_lost_under_a_batch_fails_all_of_it_and_keeps_none(
    storage: SqlStorage, database_url: str, reported: Reported
) -> None:
    writes = group(storage)
    assert await write(writes, 1) == 1
    backend = await _backend(writes)
    in_flight = [asyncio.ensure_future(writes.run(SLOW_WRITE, (n, True, 1.0))) for n in range(2, 5)]
    admin = await _connect(database_url)
    try:
        for _attempt in range(500):  # until the batch is on the server, sleeping
            if await admin.fetchval(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE pid = $1 AND state = 'active' AND query LIKE '%pg_sleep%'",
                backend,
            ):
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the batch never reached the server")
    finally:
        await admin.close()
    results = await asyncio.gather(*in_flight, return_exceptions=True)
    assert all(isinstance(result, StorageError) for result in results), results
    assert await committed(database_url) == [1]
    assert await write(writes, 5) == 1  # the next batch goes on, on a live connection
    assert await committed(database_url) == [1, 5]
    assert [outcome for _backend, outcome, _writes in reported] == [
        "committed",  # 1
        "committed",  # the backend's pid
        "failed",
        "committed",  # 5
    ]
    assert reported[2] == ("postgresql", "failed", 3)


async def test_a_pooled_connection_closed_while_idle_is_replaced_before_sending(
    storage: SqlStorage, database_url: str
) -> None:
    writes = group(storage)
    backend = await _backend(writes)
    admin = await _connect(database_url)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", backend)
    finally:
        await admin.close()
    await asyncio.sleep(0.2)  # the client hears of it
    assert await write(writes, 1) == 1
    assert await _backend(writes) != backend
    assert await committed(database_url) == [1]


async def test_closing_the_storage_lets_a_batch_in_flight_finish(database_url: str) -> None:
    """Its caller gone (cancelled as the process stops), the batch still holds a connection:
    closing waits for it, so the connection goes back and is closed, and the write is
    committed."""
    await _with_scratch(database_url)
    storage = await create_storage(database_url)
    caller = asyncio.ensure_future(group(storage).run(SLOW_WRITE, (7, True, 0.3)))
    await asyncio.sleep(0.1)
    caller.cancel()
    await storage.close()
    assert await committed(database_url) == [7]
    assert storage.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
