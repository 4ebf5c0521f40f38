"""A unit of work takes a pooled connection that is ready without a greenlet hand-off
(`storage.db.checkout_now`), and goes through SQLAlchemy's own checkout, under a greenlet,
whenever that checkout would have to wait or talk to the database: nothing idle in the pool,
a connection past its recycle time or invalidated, a pool that pings or has checkout
listeners. Which connection it takes is the one SQLAlchemy's queue would hand out next."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import upgrade
from storage.db import PooledTransaction, checkout_now
from storage.engine import create_engine
from storage.sqlalchemy_storage import SqlStorage, SqlUnitOfWork


@pytest.fixture
def hand_offs(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every checkout made through SQLAlchemy's async API (under a greenlet)."""
    made: list[object] = []
    original = AsyncEngine.raw_connection

    async def counted(self: AsyncEngine) -> Any:
        made.append(self)
        return await original(self)

    monkeypatch.setattr(AsyncEngine, "raw_connection", counted)
    return made


@pytest.fixture
async def two_connections(database_url: str) -> AsyncIterator[SqlStorage]:
    """A storage whose pool keeps two connections (PostgreSQL: last in, first out)."""
    await upgrade(database_url)
    handle = SqlStorage(create_engine(database_url, pool_size=2, max_overflow=0))
    try:
        yield handle
    finally:
        await handle.close()


def _driver(uow: object) -> Any:
    assert isinstance(uow, SqlUnitOfWork) and uow.transaction is not None
    return uow.transaction.driver


async def test_a_ready_pooled_connection_is_taken_without_a_hand_off(
    storage: SqlStorage, hand_offs: list[object]
) -> None:
    drivers = []
    for _ in range(3):
        async with storage.unit_of_work() as uow:
            assert await uow.reports.get("none") is None
            drivers.append(_driver(uow))
    assert len(hand_offs) == 1  # the first: the pool had nothing to give yet
    assert drivers[0] is drivers[1] is drivers[2]
    assert storage.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_nothing_idle_in_the_pool_goes_through_sqlalchemy(storage: SqlStorage) -> None:
    assert checkout_now(storage.engine) is None  # nothing opened yet
    async with storage.unit_of_work():
        assert checkout_now(storage.engine) is None  # the only connection is in use


async def test_a_connection_past_its_recycle_time_is_recycled_by_sqlalchemy(
    storage: SqlStorage, hand_offs: list[object]
) -> None:
    async with storage.unit_of_work() as uow:
        assert await uow.reports.get("none") is None  # SQLite checks out at a first statement
        old = _driver(uow)
    storage.engine.sync_engine.pool._recycle = 0
    await asyncio.sleep(0.01)  # time.time() moves on: the times compared differ
    assert checkout_now(storage.engine) is None
    async with storage.unit_of_work() as uow:
        assert await uow.reports.get("none") is None
        assert _driver(uow) is not old  # reconnected, under the greenlet
    assert len(hand_offs) == 2


async def test_after_the_pool_is_invalidated_sqlalchemy_reconnects(
    storage: SqlStorage, hand_offs: list[object]
) -> None:
    """What SQLAlchemy does when it meets a disconnect: every older connection is stale."""
    async with storage.unit_of_work() as uow:
        assert await uow.reports.get("none") is None  # SQLite checks out at a first statement
        old = _driver(uow)
    await asyncio.sleep(0.01)  # time.time() moves on: the times compared differ
    storage.engine.sync_engine.pool._invalidate(None)  # type: ignore[arg-type]
    assert checkout_now(storage.engine) is None
    async with storage.unit_of_work() as uow:
        assert await uow.reports.get("none") is None
        assert _driver(uow) is not old
    assert len(hand_offs) == 2


async def test_a_pool_that_pings_or_listens_for_checkouts_goes_through_sqlalchemy(
    database_url: str,
) -> None:
    await upgrade(database_url)
    pinging = create_engine(database_url)
    pinging.sync_engine.pool._pre_ping = True
    listened = create_engine(database_url)
    checkouts: list[object] = []
    event.listen(listened.sync_engine, "checkout", lambda *args: checkouts.append(args))
    try:
        for engine in (pinging, listened):
            first = await PooledTransaction.begin(engine)
            await first.release()
            assert checkout_now(engine) is None
            second = await PooledTransaction.begin(engine)
            await second.release()
        assert len(checkouts) == 2
    finally:
        await pinging.dispose()
        await listened.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("stale", ["returned first", "returned last"])
async def test_the_connection_checked_is_the_one_the_pool_hands_out_next(
    two_connections: SqlStorage, stale: str
) -> None:
    """Two idle connections, one soft-invalidated: the pool hands out the one returned last,
    and only when that one is ready is it taken at once."""
    storage = two_connections
    first, second = storage.unit_of_work(), storage.unit_of_work()
    await first.__aenter__()
    await second.__aenter__()
    # A unit of work checks its connection out at its first statement.
    assert await first.reports.get("none") is None
    assert await second.reports.get("none") is None
    assert first.transaction is not None and second.transaction is not None
    await asyncio.sleep(0.01)  # time.time() moves on: the times compared differ
    spoiled = first if stale == "returned first" else second
    assert spoiled.transaction is not None
    spoiled.transaction.fairy.invalidate(soft=True)
    fresh = second if spoiled is first else first
    fresh_driver = _driver(fresh)
    await first.__aexit__(None, None, None)
    await second.__aexit__(None, None, None)
    taken = checkout_now(storage.engine)
    if stale == "returned first":
        assert taken is not None and taken.driver_connection is fresh_driver
        taken._close_special(transaction_reset=True)
    else:
        assert taken is None
    async with storage.unit_of_work() as uow:
        assert await uow.reports.get("none") is None
    assert storage.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
