"""The SQL unit of work on the driver's connection (`storage.db.PooledTransaction`).

A turn's statements run on the driver and the commit is the driver's, while other statements
in the same unit of work go through SQLAlchemy: they must all share one transaction, a unit
of work left without `commit()` must undo all of them, and the connection must come back to
the pool with no transaction open, on SQLite (one writer, BEGIN IMMEDIATE) and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.util import greenlet_spawn

import storage.db as storage_db
from bot.engine.types import ConversationState
from bot.ports import ConversationRecord, OutboxMessage, StorageError, TranscriptEntry
from storage import upgrade
from storage.db import PooledTransaction
from storage.engine import POOL_SIZE, REQUEST_TIMEOUTS, create_engine
from storage.sqlalchemy_storage import (
    DISPATCHER_POOL_SIZE,
    SqlStorage,
    SqlUnitOfWork,
    create_storage,
)
from storage.staff import StaffStore


def _conversation(conversation_id: str) -> ConversationRecord:
    now = datetime.now(UTC)
    return ConversationRecord(
        id=conversation_id,
        channel="web",
        state=ConversationState(step="start"),
        created_at=now,
        updated_at=now,
        token_hash="ab" * 32,
    )


async def _mixed_turn(storage: SqlStorage, conversation_id: str, *, commit: bool) -> None:
    """A new conversation (through SQLAlchemy), then a turn on it (the driver's read and
    write), then an outbox row (SQLAlchemy again), in one unit of work."""
    async with storage.unit_of_work() as uow:
        await uow.conversations.add(_conversation(conversation_id))
        record, prior = await uow.conversations.get_for_turn(
            conversation_id, scope=conversation_id, message_id="m1"
        )
        assert record is not None and prior is None
        record.state = ConversationState(step="next")
        line = TranscriptEntry(record.transcript_seq, "user", {"text": "x"}, datetime.now(UTC))
        record.transcript_seq += 1
        await uow.save_turn(
            record, [line], scope=conversation_id, message_id="m1", reply={"said": "ok"}
        )
        await uow.outbox.add([OutboxMessage("test.topic", conversation_id, {"n": 1})])
        if commit:
            await uow.commit()


async def _stored(storage: SqlStorage, conversation_id: str) -> tuple[object, object, int]:
    async with storage.unit_of_work() as uow:
        record = await uow.conversations.get(conversation_id)
        lines = await uow.transcripts.list(conversation_id)
        _, prior = await uow.conversations.get_for_turn(
            conversation_id, scope=conversation_id, message_id="m1"
        )
        await uow.commit()
    return (None if record is None else record.state.step), prior, len(lines)


async def test_driver_and_sqlalchemy_statements_commit_together(storage: SqlStorage) -> None:
    await _mixed_turn(storage, "c-commit", commit=True)
    assert await _stored(storage, "c-commit") == ("next", {"said": "ok"}, 1)


async def test_leaving_without_commit_undoes_driver_and_sqlalchemy_statements(
    storage: SqlStorage,
) -> None:
    for _ in range(3):  # the connection comes back clean each time (SQLite: one writer)
        await _mixed_turn(storage, "c-rollback", commit=False)
        assert await _stored(storage, "c-rollback") == (None, None, 0)


async def test_a_failed_turn_leaves_the_pooled_connection_usable(storage: SqlStorage) -> None:
    await _mixed_turn(storage, "c-first", commit=True)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            async with storage.unit_of_work() as uow:
                await uow.conversations.get_for_turn("c-first", scope="c-first", message_id="m9")
                raise RuntimeError("the turn failed after its locked read")
    # A next unit of work begins (SQLite: BEGIN IMMEDIATE would fail inside an open one).
    await _mixed_turn(storage, "c-second", commit=True)
    assert await _stored(storage, "c-second") == ("next", {"said": "ok"}, 1)


def _held_rollbacks(monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, asyncio.Event]:
    """Every unit of work's rollback waits: the first event is set when one begins, and
    they go on once the second is set (a rollback that takes its time)."""
    rolling_back = asyncio.Event()
    may_finish = asyncio.Event()
    rollback = PooledTransaction.rollback

    async def slow_rollback(self: PooledTransaction) -> None:
        rolling_back.set()
        await may_finish.wait()
        await rollback(self)

    monkeypatch.setattr(PooledTransaction, "rollback", slow_rollback)
    return rolling_back, may_finish


async def test_a_turn_cancelled_while_its_connection_goes_back_still_returns_it(
    storage: SqlStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request cancelled (client gone, worker shutting down) while its unit of work is
    rolling back must not strand the pooled connection: it would be checked out for good,
    and found by the garbage collector later, in whatever runs then."""
    rolling_back, may_finish = _held_rollbacks(monkeypatch)
    pool = storage.engine.pool
    before = pool.checkedout()  # type: ignore[attr-defined]
    task = asyncio.create_task(_mixed_turn(storage, "c-cancelled", commit=False))
    await rolling_back.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    may_finish.set()
    for _ in range(100):
        if pool.checkedout() == before:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.01)
    assert pool.checkedout() == before  # type: ignore[attr-defined]
    monkeypatch.undo()
    assert await _stored(storage, "c-cancelled") == (None, None, 0)


async def test_closing_waits_for_a_connection_still_on_its_way_back(
    storage: SqlStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker stopping cancels its in-flight work (the outbox dispatcher's settles) and then
    closes the storage. A unit of work cancelled mid-rollback finishes returning its
    connection in the background; `close()` must wait for that before it disposes of the
    pool, or the connection is left checked out of a disposed pool, its event loop about to
    end, for the garbage collector to find later (in whatever runs then)."""
    rolling_back, may_finish = _held_rollbacks(monkeypatch)
    pool: Any = storage.engine.pool
    before = pool.checkedout()
    checked_out_at_dispose: list[int] = []
    dispose = pool.dispose

    def recorded_dispose() -> None:
        checked_out_at_dispose.append(pool.checkedout())
        dispose()

    monkeypatch.setattr(pool, "dispose", recorded_dispose)
    task = asyncio.create_task(_mixed_turn(storage, "c-cancelled", commit=False))
    await rolling_back.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    closing = asyncio.create_task(storage.close())
    # Long enough for a close that does not wait to have disposed of the pool already.
    await asyncio.sleep(0.2)
    may_finish.set()
    await closing
    assert checked_out_at_dispose == [before]
    assert pool.checkedout() == before


async def test_an_ended_unit_of_work_returns_its_connection_without_a_hand_off(
    storage: SqlStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Committed or rolled back, a unit of work's connection goes back to the pool before
    `async with` ends, by SQLAlchemy's own check-in run in place (no greenlet: nothing on the
    way needs I/O), and the next unit of work takes the same connection."""
    hand_offs: list[object] = []

    async def counted(fn: object, *args: object, **kwargs: object) -> object:
        hand_offs.append(fn)
        return await greenlet_spawn(fn, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(storage_db, "greenlet_spawn", counted)
    pool = storage.engine.pool
    drivers = []
    for commit in (True, False, True):
        async with storage.unit_of_work() as uow:
            await uow.outbox.add([OutboxMessage("test.topic", "k", {"n": 1})])
            assert isinstance(uow, SqlUnitOfWork) and uow.transaction is not None
            drivers.append(uow.transaction.driver)
            if commit:
                await uow.commit()
        assert pool.checkedout() == 0  # type: ignore[attr-defined]
    assert hand_offs == []
    assert drivers[0] is drivers[1] is drivers[2]
    async with storage.unit_of_work() as uow:
        assert len(await uow.outbox.list()) == 2


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_connection_the_pool_has_no_room_for_is_closed_on_the_way_back(
    database_url: str,
) -> None:
    """An overflow connection (the pool's queue is full when it comes back) is closed by
    SQLAlchemy's check-in under a greenlet, as before, not put back."""
    await upgrade(database_url)
    storage = SqlStorage(create_engine(database_url, pool_size=1, max_overflow=1))
    try:
        first, second = storage.unit_of_work(), storage.unit_of_work()
        await first.__aenter__()
        await second.__aenter__()
        # A unit of work checks its connection out at its first statement.
        assert await first.reports.get("none") is None
        assert await second.reports.get("none") is None
        assert first.transaction is not None and second.transaction is not None
        overflow = second.transaction.driver
        await first.__aexit__(None, None, None)
        await second.__aexit__(None, None, None)
        pool = storage.engine.pool
        assert pool.checkedout() == 0  # type: ignore[attr-defined]
        assert pool.checkedin() == 1  # type: ignore[attr-defined]
        assert overflow.is_closed()
        async with storage.unit_of_work() as uow:  # the one kept still serves
            assert await uow.reports.get("none") is None
    finally:
        await storage.close()


async def _backends_of_a_burst(storage: SqlStorage, size: int) -> set[int]:
    """Open `size` units of work at once (a burst: every connection of the pool checked out
    together), and return the server process ids of the connections they had."""
    units = [storage.unit_of_work() for _ in range(size)]
    for unit in units:
        await unit.__aenter__()
        assert await unit.reports.get("none") is None  # checks its connection out
    try:
        pids = set()
        for unit in units:
            assert unit.transaction is not None
            pids.add(await unit.transaction.driver.fetchval("SELECT pg_backend_pid()"))
        return pids
    finally:
        for unit in units:
            await unit.__aexit__(None, None, None)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_the_serving_pools_keep_a_bursts_connections_for_the_next_burst(
    database_url: str,
) -> None:
    """A serving worker's pools (the turns', and the dispatchers' own) keep every connection a
    burst opened, up to their size, so the next burst opens none: a connection closed after
    each burst and opened again for the next paid TLS, the driver's type set-up and every
    statement's preparation again, and stalled the worker's event loop (storage.engine,
    `POOL_SIZE`). With an overflow part (10 + 5 before) the 5 were closed each time."""
    await upgrade(database_url)
    storage = await create_storage(database_url)
    try:
        for pool_storage, size in (
            (storage, POOL_SIZE),
            (storage.dispatcher_storage(), DISPATCHER_POOL_SIZE),
        ):
            first = await _backends_of_a_burst(pool_storage, size)
            assert len(first) == size
            pool = pool_storage.engine.pool
            assert pool.checkedin() == size  # type: ignore[attr-defined]
            assert await _backends_of_a_burst(pool_storage, size) == first
    finally:
        await storage.close()


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_units_of_work_get_connections_in_the_order_they_asked(database_url: str) -> None:
    """A connection handed back goes to the unit of work that has waited longest, not to one
    that asks at that moment (`storage.db.Turnstile`). SQLAlchemy's queue gave it to the
    newcomer and sent the waiter to the back: with 200 web conversations in flight some
    waited past the pool's timeout (503)."""
    await upgrade(database_url)
    storage = SqlStorage(create_engine(database_url, pool_size=1, max_overflow=0))
    order: list[str] = []

    async def unit(name: str) -> None:
        async with storage.unit_of_work() as uow:
            assert await uow.reports.get("none") is None
            order.append(name)

    try:
        holder = storage.unit_of_work()
        await holder.__aenter__()
        # The one connection, checked out (on SQLite by the unit of work's first statement).
        assert await holder.reports.get("none") is None
        waiter = asyncio.create_task(unit("waiter"))
        for _ in range(5):
            await asyncio.sleep(0)  # the waiter is queued for it
        assert order == []
        # A newcomer is ready to run when the connection goes back: it must not run before
        # the waiter woken for it.
        newcomer = asyncio.create_task(unit("newcomer"))
        await holder.__aexit__(None, None, None)
        async with asyncio.timeout(10):
            await asyncio.gather(waiter, newcomer)
    finally:
        await storage.close()
    assert order == ["waiter", "newcomer"]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_burst_on_a_fresh_pool_opens_its_connections_one_at_a_time(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five units of work at once on a pool of five with none open: each gets a connection,
    the pool opening them one after another (`storage.db.Turnstile`), not five at once. A
    fresh worker whose every waiting turn opened its own opened all 50, and each new one's
    first statements were slow: its first second under load took up to 1 s a turn."""
    await upgrade(database_url)
    opening, most = 0, 0
    connect = asyncpg.connect

    async def slow_connect(*args: Any, **kwargs: Any) -> Any:
        nonlocal opening, most
        opening += 1
        most = max(most, opening)
        try:
            await asyncio.sleep(0.05)  # long enough for every unit of work to be waiting
            return await connect(*args, **kwargs)
        finally:
            opening -= 1

    monkeypatch.setattr(asyncpg, "connect", slow_connect)
    storage = SqlStorage(create_engine(database_url, pool_size=5))
    all_in = asyncio.Event()
    inside = 0

    async def unit() -> None:
        nonlocal inside
        async with storage.unit_of_work() as uow:
            assert await uow.reports.get("none") is None
            inside += 1
            if inside == 5:
                all_in.set()
            await all_in.wait()  # every connection held until all five have one

    try:
        async with asyncio.timeout(10):
            await asyncio.gather(*(unit() for _ in range(5)))
        assert storage.engine.pool.checkedin() == 5  # type: ignore[attr-defined]
    finally:
        await storage.close()
    assert most == 1


async def test_a_pool_lined_up_is_not_kept_alive_by_its_line(tmp_path: Path) -> None:
    """The turnstiles are kept per pool, weakly: an engine thrown away (a command's, a test's)
    takes its pool and line with it."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}")
    pool = weakref.ref(engine.sync_engine.pool)
    assert storage_db.turnstile(engine) is not None
    await engine.dispose()
    del engine
    gc.collect()
    assert pool() is None


@contextlib.asynccontextmanager
async def _holding(kind: str, storage: SqlStorage) -> AsyncIterator[None]:
    if kind == "staff transaction":
        async with StaffStore(storage.engine).transaction():
            yield
        return
    async with storage.unit_of_work() as uow:
        assert await uow.reports.get("none") is None  # holds the connection from here
        yield


async def _taking(kind: str, storage: SqlStorage) -> None:
    if kind == "ping":
        await storage.ping()
        return
    async with storage.unit_of_work() as uow:
        assert await uow.reports.get("none") is None


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize(
    ("holder", "waiter"),
    [
        ("unit of work", "unit of work"),
        # A staff page's transaction takes a connection of the turns' pool (the staff pages
        # share the app's engine): it holds a permit for it, so units of work wait in line,
        # not in the pool's own queue, where a connection handed back goes to whoever asks
        # at that moment.
        ("staff transaction", "unit of work"),
        # A short read outside a unit of work (`/readyz`'s ping, the directory) waits in the
        # same line (`storage.db.in_line_for_a_connection`).
        ("unit of work", "ping"),
    ],
)
async def test_a_wait_in_line_past_the_pool_timeout_is_a_storage_error(
    database_url: str, holder: str, waiter: str
) -> None:
    """The wait in line is bounded by the pool's own timeout (a serving pool's is seconds),
    and the one that gave up leaves its place."""
    await upgrade(database_url)
    timeouts = replace(REQUEST_TIMEOUTS, pool_seconds=0.2)
    storage = SqlStorage(create_engine(database_url, pool_size=1, timeouts=timeouts))
    try:
        async with _holding(holder, storage):
            with pytest.raises(StorageError, match="no database connection free in time"):
                await _taking(waiter, storage)
        await _taking(waiter, storage)  # the permits are back
    finally:
        await storage.close()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_the_outbox_listen_holds_its_place_in_line(database_url: str) -> None:
    """The LISTEN keeps one of the dispatchers' connections for good, outside any unit of
    work: it holds a permit of the turnstile for it, so units of work wait in line for the
    others (here there are none) instead of in the pool's own queue."""
    from storage.outbox import listen_for_outbox

    await upgrade(database_url)
    timeouts = replace(REQUEST_TIMEOUTS, pool_seconds=0.2)
    storage = SqlStorage(create_engine(database_url, pool_size=1, timeouts=timeouts))
    listening = asyncio.Event()
    listen = asyncio.create_task(listen_for_outbox(storage.engine, lambda _t: listening.set()))
    try:
        async with asyncio.timeout(10):
            await listening.wait()
        with pytest.raises(StorageError, match="no database connection free in time"):
            async with storage.unit_of_work() as uow:
                await uow.reports.get("none")
    finally:
        listen.cancel()
        await asyncio.gather(listen, return_exceptions=True)
        await storage.close()
