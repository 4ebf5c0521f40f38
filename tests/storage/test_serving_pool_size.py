"""How `intake serve`'s workers share INTAKE_DATABASE_CONNECTIONS (storage.sqlalchemy_storage,
`serving_pool_size`): each keeps 8 for its outbox dispatchers and takes an even share of the
rest for its turns, up to 50; the turns' pool is then that size."""

from __future__ import annotations

import pytest

from storage import upgrade
from storage.db import turnstile
from storage.sqlalchemy_storage import (
    DISPATCHER_POOL_SIZE,
    MAX_SERVING_POOL_SIZE,
    create_storage,
    serving_pool_size,
)


@pytest.mark.parametrize(
    ("connections", "workers", "turns"),
    [
        (90, 1, MAX_SERVING_POOL_SIZE),  # 82 would be more than a worker can use
        (90, 2, 37),
        (90, 4, 14),
        (90, 6, 7),
        (200, 2, MAX_SERVING_POOL_SIZE),
        (39, 3, 5),
    ],
)
def test_each_worker_gets_an_even_share_of_the_connections(
    connections: int, workers: int, turns: int
) -> None:
    size = serving_pool_size(connections, workers)
    assert size == turns
    assert workers * (size + DISPATCHER_POOL_SIZE) <= connections


@pytest.mark.parametrize(("connections", "workers"), [(38, 3), (12, 1), (90, 7), (90, 0)])
def test_too_few_connections_for_the_workers_is_an_error(connections: int, workers: int) -> None:
    with pytest.raises(ValueError, match="worker"):
        serving_pool_size(connections, workers)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_the_turns_pool_has_the_size_asked_for(database_url: str) -> None:
    """The size reaches SQLAlchemy's pool, and with it the turnstile's bound
    (`storage.db.Turnstile`); the dispatchers' pool keeps its own 8."""
    await upgrade(database_url)
    storage = await create_storage(database_url, pool_size=23)
    try:
        async with storage.unit_of_work():
            pass  # the turnstile is made with the first unit of work
        assert storage.engine.pool.size() == 23  # type: ignore[attr-defined]
        line = turnstile(storage.engine)
        assert line is not None and line._bound == 23
        dispatchers = storage.dispatcher_storage().engine.pool
        assert dispatchers.size() == DISPATCHER_POOL_SIZE  # type: ignore[attr-defined]
    finally:
        await storage.close()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_one_at_a_time_the_connection_handed_back_last_is_used_again(
    database_url: str,
) -> None:
    """After a burst opened the whole pool, turns that come one at a time keep using the one
    connection handed back last (last in, first out), hot, instead of taking every connection
    of the pool in turn: with 50 taken in turn the Telegram open loop's p99 doubled
    (storage.engine, `pool_use_lifo`)."""
    await upgrade(database_url)
    storage = await create_storage(database_url, pool_size=5)
    try:
        burst = [storage.unit_of_work() for _ in range(5)]
        for unit in burst:
            await unit.__aenter__()
            assert await unit.reports.get("none") is None  # checks its connection out
        for unit in burst:
            await unit.__aexit__(None, None, None)
        backends = set()
        for _ in range(6):
            async with storage.unit_of_work() as unit:
                assert await unit.reports.get("none") is None  # checks its connection out
                assert unit.transaction is not None
                backends.add(await unit.transaction.driver.fetchval("SELECT pg_backend_pid()"))
        assert storage.engine.pool.checkedin() == 5  # type: ignore[attr-defined]
        assert len(backends) == 1
    finally:
        await storage.close()
