"""The dispatcher's own rules, on a real database: bounded attempts end in a dead letter,
a delivered message keeps only its audit fields, each topic goes to its adapter."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.outbox.dispatcher import OutboxDispatcher, Outcome
from bot.ports import OutboxMessage, StorageError
from storage import create_storage
from storage.sqlalchemy_storage import SqlStorage


async def test_retries_are_bounded_then_dead_lettered_and_bodies_erased_on_delivery(
    storage: SqlStorage,
) -> None:
    calls: list[tuple[str, int]] = []

    async def flaky(message: OutboxMessage) -> Outcome:
        calls.append((message.topic, message.attempts))
        return Outcome.retry("refused", 0.0)

    async def fine(message: OutboxMessage) -> Outcome:
        calls.append((message.topic, message.attempts))
        return Outcome.done()

    dispatcher = OutboxDispatcher(
        storage, {"email": flaky, "webhook": fine}, poll_interval=0.05, max_attempts=3
    )
    async with storage.unit_of_work() as uow:
        await uow.outbox.add(
            [
                OutboxMessage("email", "R1", {"kind": "ack", "reference": "R1", "to": "a@b.org"}),
                OutboxMessage("webhook", "R1", {"kind": "handoff", "reference": "R1", "body": "x"}),
            ]
        )
        await uow.commit()

    outcomes: list[str] = []
    finished = asyncio.Event()

    def observe(message: OutboxMessage, outcome: Outcome) -> None:
        outcomes.append(outcome.status)
        if outcomes.count("done") == 1 and outcomes.count("failed") == 1:
            finished.set()

    dispatcher.observers.append(observe)
    dispatcher.start()
    try:
        async with asyncio.timeout(20):
            await finished.wait()
    finally:
        await dispatcher.stop()
    assert calls.count(("webhook", 1)) == 1
    assert [c for c in calls if c[0] == "email"] == [("email", 1), ("email", 2), ("email", 3)]
    async with storage.unit_of_work() as uow:
        (dead,) = await uow.outbox.list(status="failed")
        (done,) = await uow.outbox.list(status="done")
    assert dead.topic == "email" and dead.last_error == "gave_up_refused"
    assert done.payload == {"kind": "handoff", "reference": "R1"}


async def test_two_workers_drain_one_outbox_each_message_once(
    database_url: str, storage: SqlStorage
) -> None:
    """Two dispatchers, each with its own connection pool (as two worker processes have),
    deliver 60 messages of 12 keys: every message once, each key in order."""
    delivered: list[tuple[str, int]] = []
    total = 60

    async def send(message: OutboxMessage) -> Outcome:
        delivered.append((message.ordering_key, int(message.payload["n"])))
        await asyncio.sleep(0)  # let the other worker in between
        return Outcome.done()

    async with storage.unit_of_work() as uow:
        await uow.outbox.add([OutboxMessage("email", f"k{n % 12}", {"n": n}) for n in range(total)])
        await uow.commit()
    other = await create_storage(database_url)
    workers = [
        OutboxDispatcher(handle, "email", send, poll_interval=0.02, concurrency=4)
        for handle in (storage, other)
    ]
    all_done = asyncio.Event()
    for worker in workers:
        worker.observers.append(lambda _m, _o: len(delivered) >= total and all_done.set())
        worker.start()
    try:
        async with asyncio.timeout(60):
            await all_done.wait()
    finally:
        for worker in workers:
            await worker.stop()
        await other.close()
    assert sorted(n for _k, n in delivered) == list(range(total))
    for key in {k for k, _n in delivered}:
        numbers = [n for k, n in delivered if k == key]
        assert numbers == sorted(numbers)
    assert sum(w.counters["sent"] for w in workers) == total


async def test_on_postgresql_a_new_message_wakes_an_idle_dispatcher(
    database_url: str, storage: SqlStorage
) -> None:
    """The dispatcher polls once an hour here: only the NOTIFY from the other process's
    commit can make it deliver within the test."""
    if storage.backend != "postgresql":
        pytest.skip("only PostgreSQL can notify; SQLite dispatchers poll")
    delivered = asyncio.Event()

    async def send(message: OutboxMessage) -> Outcome:
        delivered.set()
        return Outcome.done()

    dispatcher = OutboxDispatcher(storage, "email", send, poll_interval=3600, listen=True)
    listening = asyncio.Event()
    original = dispatcher._notified

    def notified(topic: str) -> None:
        original(topic)
        listening.set()

    dispatcher._notified = notified  # type: ignore[method-assign]
    dispatcher.start()
    writer = await create_storage(database_url)
    try:
        async with asyncio.timeout(30):
            await listening.wait()  # LISTEN is in place (the first, empty wake)
            async with writer.unit_of_work() as uow:
                await uow.outbox.add([OutboxMessage("email", "k", {"kind": "ack"})])
                await uow.commit()
            await delivered.wait()
    finally:
        await dispatcher.stop()
        await writer.close()


class _ClaimSwallowsCancellation:
    """A storage whose claim, when cancelled, fails as a StorageError: what asyncpg can do
    when a query is cancelled mid-protocol and the rollback then fails."""

    def __init__(self) -> None:
        self.claiming = asyncio.Event()

    def unit_of_work(self) -> _ClaimSwallowsCancellation:
        return self

    async def __aenter__(self) -> _ClaimSwallowsCancellation:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    @property
    def outbox(self) -> _ClaimSwallowsCancellation:
        return self

    async def claim(self, *args: object, **kwargs: object) -> list[OutboxMessage]:
        self.claiming.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise StorageError("connection is busy with another operation") from None
        return []


async def test_stop_ends_the_loop_even_when_a_cancelled_claim_fails_as_a_storage_error() -> None:
    storage = _ClaimSwallowsCancellation()

    async def never(message: OutboxMessage) -> Outcome:
        raise AssertionError("nothing to deliver")

    dispatcher = OutboxDispatcher(storage, "email", never, poll_interval=0.01)  # type: ignore[arg-type]
    dispatcher.start()
    async with asyncio.timeout(10):
        await storage.claiming.wait()
        await dispatcher.stop()
    assert not dispatcher.running


class _ClaimWaits(_ClaimSwallowsCancellation):
    """A storage whose claim waits on the database until it is cancelled."""

    async def claim(self, *args: object, **kwargs: object) -> list[OutboxMessage]:
        self.claiming.set()
        await asyncio.Event().wait()
        return []


@pytest.mark.parametrize("claim", [_ClaimWaits, _ClaimSwallowsCancellation])
async def test_stop_called_by_a_task_already_cancelled_still_finishes(
    claim: type[_ClaimSwallowsCancellation],
) -> None:
    """aiohttp runs an app's cleanup in its main task after cancelling it (`web.run_app`):
    `stop` called there ends the loop (cancelled in the middle of a claim) and returns, so
    the rest of `stop` and the cleanup after it (closing the HTTP session) run too. It raised
    the loop task's own CancelledError half-way, and every server's shutdown logged
    "Unclosed client session"."""
    storage = claim()

    async def never(message: OutboxMessage) -> Outcome:
        raise AssertionError("nothing to deliver")

    dispatcher = OutboxDispatcher(storage, "email", never, poll_interval=0.01)  # type: ignore[arg-type]
    dispatcher.start()

    async def cleanup() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await dispatcher.stop()
            return "cleaned up"
        return "never cancelled"

    async with asyncio.timeout(10):
        await storage.claiming.wait()
        task = asyncio.create_task(cleanup())
        await asyncio.sleep(0)
        task.cancel()
        assert await task == "cleaned up"
    assert not dispatcher.running


async def test_a_message_claimed_with_its_turn_is_sent_without_a_claim_and_its_key_follows(
    storage: SqlStorage,
) -> None:
    """`reserve`, `add(claim_for=...)`, commit, `hand_over`: the message goes at once though
    the dispatcher would not poll for an hour and was not woken; settling it claims the key's
    next message in the same transaction, so that one follows without a poll either."""
    delivered: list[tuple[str, int]] = []
    both = asyncio.Event()

    async def send(message: OutboxMessage) -> Outcome:
        delivered.append((message.payload["label"], message.attempts))
        if len(delivered) == 2:
            both.set()
        return Outcome.done()

    dispatcher = OutboxDispatcher(storage, "chat", send, poll_interval=3600)
    assert not dispatcher.reserve()  # not running: nothing may be claimed for it
    dispatcher.start()
    await asyncio.sleep(0.1)  # its first claim finds nothing; then it sleeps for the hour
    try:
        assert dispatcher.reserve()
        first = OutboxMessage("chat", "c1", {"label": "first"})
        second = OutboxMessage("chat", "c1", {"label": "second"})
        async with storage.unit_of_work() as uow:
            claimed = await uow.outbox.add([first, second], claim_for=dispatcher.lease_seconds)
            await uow.commit()
        assert claimed == [first]  # the second waits behind the first
        dispatcher.hand_over(claimed)
        async with asyncio.timeout(20):
            await both.wait()
    finally:
        await dispatcher.stop()
    assert delivered == [("first", 1), ("second", 1)]
    assert dispatcher.counters["sent"] == 2


async def test_reserve_keeps_within_concurrency(storage: SqlStorage) -> None:
    async def send(message: OutboxMessage) -> Outcome:
        return Outcome.done()

    dispatcher = OutboxDispatcher(storage, "chat", send, poll_interval=3600, concurrency=2)
    dispatcher.start()
    try:
        assert dispatcher.reserve() and dispatcher.reserve()
        assert not dispatcher.reserve()  # both slots promised
        dispatcher.release()
        assert dispatcher.reserve()
    finally:
        dispatcher.release()
        dispatcher.release()
        await dispatcher.stop()


async def test_a_message_claimed_by_a_turn_whose_process_died_is_sent_once_after_its_lease(
    storage: SqlStorage,
) -> None:
    """The writer committed its claimed reply and died before handing it over: another
    dispatcher sends it once the lease runs out, once."""
    delivered: list[tuple[str, int]] = []
    sent = asyncio.Event()

    async def send(message: OutboxMessage) -> Outcome:
        delivered.append((message.payload["label"], message.attempts))
        sent.set()
        return Outcome.done()

    async with storage.unit_of_work() as uow:
        claimed = await uow.outbox.add([OutboxMessage("chat", "c1", {"label": "r"})], claim_for=0.5)
        await uow.commit()
    assert len(claimed) == 1
    survivor = OutboxDispatcher(storage, "chat", send, poll_interval=0.05)
    survivor.start()
    try:
        async with asyncio.timeout(20):
            await sent.wait()
        await asyncio.sleep(0.3)  # a few more polls: nothing else to send
    finally:
        await survivor.stop()
    assert delivered == [("r", 2)]


async def _hold_every_connection(engine: AsyncEngine, held: contextlib.AsyncExitStack) -> None:
    """Check out every connection `engine`'s pool may open, until `held` closes."""
    pool: Any = engine.pool
    most = pool.size() + pool._max_overflow
    for _ in range(most):
        await held.enter_async_context(engine.connect())
    assert pool.checkedout() == most


async def test_claims_and_settles_do_not_queue_behind_the_turns_for_a_connection(
    database_url: str, storage: SqlStorage
) -> None:
    """PostgreSQL: with the turns' pool checked out to the last connection (a burst of turns),
    a dispatcher over `dispatcher_storage()` (as the composition root builds it) still claims,
    sends, settles (claiming the chat's next message) and is woken by NOTIFY, on connections
    of its own; and with the dispatchers' connections all busy, a turn still commits. SQLite:
    one connection for both, as before (a single writer)."""
    dispatcher_storage = storage.dispatcher_storage()
    if storage.backend != "postgresql":
        assert dispatcher_storage is storage
        return
    assert dispatcher_storage.engine is not storage.engine
    # Nobody waits for a settle's answer, and one that gives up sends its message twice.
    assert dispatcher_storage.engine.pool.timeout() > storage.engine.pool.timeout()  # type: ignore[attr-defined]
    async with storage.unit_of_work() as uow:
        await uow.outbox.add([OutboxMessage("chat", "c1", {"n": n}) for n in (1, 2)])
        await uow.commit()

    async with contextlib.AsyncExitStack() as busy:
        await _hold_every_connection(dispatcher_storage.engine, busy)
        async with storage.unit_of_work() as uow:  # a turn, its reply left for a claim
            await uow.outbox.add([OutboxMessage("chat", "c2", {"n": 3})])
            await uow.commit()

    delivered: list[int] = []
    three, four = asyncio.Event(), asyncio.Event()

    async def send(message: OutboxMessage) -> Outcome:
        delivered.append(int(message.payload["n"]))
        return Outcome.done()

    def observe(_message: OutboxMessage, _outcome: Outcome) -> None:
        if len(delivered) >= 3:
            three.set()
        if len(delivered) >= 4:
            four.set()

    # One slot: the first claim takes one message, then each settle claims the next.
    dispatcher = OutboxDispatcher(
        dispatcher_storage, "chat", send, poll_interval=3600, listen=True, concurrency=1
    )
    dispatcher.observers.append(observe)
    turns = contextlib.AsyncExitStack()
    writer = await create_storage(database_url)  # another worker
    try:
        await _hold_every_connection(storage.engine, turns)
        dispatcher.start()
        async with asyncio.timeout(30):
            await three.wait()
            async with writer.unit_of_work() as uow:  # its turn's commit NOTIFYs
                await uow.outbox.add([OutboxMessage("chat", "c3", {"n": 4})])
                await uow.commit()
            await four.wait()
    finally:
        await dispatcher.stop()
        await turns.aclose()
        await writer.close()
    assert sorted(delivered) == [1, 2, 3, 4] and delivered.index(1) < delivered.index(2)
    assert dispatcher.counters == {"sent": 4}


async def test_closing_the_storage_closes_the_dispatchers_connections(
    storage: SqlStorage,
) -> None:
    async with storage.dispatcher_storage().engine.connect() as connection:
        driver: Any = (await connection.get_raw_connection()).driver_connection
    # Back in its pool, still open.
    await storage.close()
    if storage.backend == "postgresql":
        assert driver.is_closed()
    else:
        assert driver._connection is None  # aiosqlite's, once closed
