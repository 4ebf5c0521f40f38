"""When a turn's reply needs the dispatcher's loop, and when it does not, on a real database:
a reply behind its chat's reply in flight is claimed by that reply's settle (no claim of the
loop's for it)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

from bot.outbox.dispatcher import OutboxDispatcher, Outcome
from bot.ports import OutboxMessage
from storage.sqlalchemy_storage import SqlStorage


class LoopClaims:
    """The loop's claims (settles claim on their own): how many began, how many ended."""

    def __init__(self, dispatcher: OutboxDispatcher) -> None:
        self.began = 0
        self.ended = 0
        self._ended = asyncio.Event()
        claim: Callable[[int], Awaitable[list[OutboxMessage] | None]] = dispatcher._claim

        async def counted(limit: int) -> list[OutboxMessage] | None:
            self.began += 1
            try:
                return await claim(limit)
            finally:
                self.ended += 1
                self._ended.set()

        dispatcher._claim = counted  # type: ignore[method-assign]

    async def ended_at_least(self, count: int) -> None:
        """Until `count` claims have ended (the loop then holds no slot for one)."""
        async with asyncio.timeout(20):
            while self.ended < count:
                self._ended.clear()
                await self._ended.wait()


async def _turn(
    storage: SqlStorage, dispatcher: OutboxDispatcher, label: str, *, reserve: bool
) -> list[OutboxMessage]:
    """A turn writing one reply for chat c1, claimed for `dispatcher` if it reserves."""
    reserved = reserve and dispatcher.reserve()
    assert reserved == reserve
    async with storage.unit_of_work() as uow:
        claimed = await uow.outbox.add(
            [OutboxMessage("chat", "c1", {"label": label})],
            claim_for=dispatcher.lease_seconds if reserved else None,
        )
        await uow.commit()
    if reserved:
        dispatcher.hand_over(claimed, "c1")
    else:
        dispatcher.wake("c1")
    return claimed


async def test_replies_behind_their_chats_reply_in_flight_go_without_a_claim_of_the_loops(
    storage: SqlStorage,
) -> None:
    """The chat's first reply is in flight (its send waits); two more turns write the chat's
    next replies, one in a reserved slot, one without. Each settle claims the next, so the
    loop, which would not poll for an hour, claims nothing after its first look: before,
    each of those turns woke it for a claim of the whole backlog."""
    delivered: list[str] = []
    gate, done = asyncio.Event(), asyncio.Event()

    async def send(message: OutboxMessage) -> Outcome:
        await gate.wait()
        delivered.append(message.payload["label"])
        if len(delivered) == 3:
            done.set()
        return Outcome.done()

    dispatcher = OutboxDispatcher(storage, "chat", send, poll_interval=3600)
    loop_claims = LoopClaims(dispatcher)
    dispatcher.start()
    try:
        await loop_claims.ended_at_least(1)  # it finds nothing; then it sleeps for the hour
        assert len(await _turn(storage, dispatcher, "first", reserve=True)) == 1
        assert await _turn(storage, dispatcher, "second", reserve=True) == []
        assert await _turn(storage, dispatcher, "third", reserve=False) == []
        await asyncio.sleep(0.1)
        assert loop_claims.began == 1  # not woken
        gate.set()
        async with asyncio.timeout(20):
            await done.wait()
        await asyncio.sleep(0.1)
    finally:
        await dispatcher.stop()
    assert delivered == ["first", "second", "third"]
    assert dispatcher.counters == {"sent": 3}
    assert loop_claims.began == 1


async def test_a_reply_behind_one_being_settled_still_wakes_the_loop(storage: SqlStorage) -> None:
    """Once the chat's reply in flight has begun its settle, that settle may have claimed
    before the turn committed: the loop is woken then, as before."""
    delivered: list[str] = []
    settling, go_on, done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def send(message: OutboxMessage) -> Outcome:
        delivered.append(message.payload["label"])
        if len(delivered) == 2:
            done.set()
        return Outcome.done()

    dispatcher = OutboxDispatcher(storage, "chat", send, poll_interval=3600)
    settle = dispatcher._settle

    async def slow_settle(message: OutboxMessage, outcome: Outcome) -> None:
        if message.payload["label"] == "first":
            settling.set()
            await go_on.wait()
        await settle(message, outcome)

    dispatcher._settle = slow_settle  # type: ignore[method-assign]
    loop_claims = LoopClaims(dispatcher)
    dispatcher.start()
    try:
        await loop_claims.ended_at_least(1)
        await _turn(storage, dispatcher, "first", reserve=True)
        async with asyncio.timeout(10):
            await settling.wait()
        assert await _turn(storage, dispatcher, "second", reserve=True) == []
        await loop_claims.ended_at_least(2)  # woken by the turn
        go_on.set()
        async with asyncio.timeout(20):
            await done.wait()
    finally:
        await dispatcher.stop()
    assert delivered == ["first", "second"]


async def test_while_messages_wait_for_a_slot_a_settle_claims_every_free_one(
    storage: SqlStorage,
) -> None:
    """A settle claims its chat's next reply in its own write, and nothing else, unless
    messages may be waiting for a slot: here another chat's reply was written while every
    slot was taken, and the loop, woken for it, found none free. The settle of the first
    reply then also claims that one, with the loop asleep for the hour."""
    delivered: list[str] = []
    gate, done = asyncio.Event(), asyncio.Event()

    async def send(message: OutboxMessage) -> Outcome:
        if message.payload["label"] == "a1":
            await gate.wait()
        delivered.append(message.payload["label"])
        if len(delivered) == 3:
            done.set()
        return Outcome.done()

    dispatcher = OutboxDispatcher(storage, "chat", send, poll_interval=3600, concurrency=3)
    loop_claims = LoopClaims(dispatcher)
    dispatcher.start()
    try:
        await loop_claims.ended_at_least(1)
        async with storage.unit_of_work() as uow:
            await uow.outbox.add([OutboxMessage("chat", "A", {"label": n}) for n in ("a1", "a2")])
            await uow.commit()
        dispatcher.wake()
        await loop_claims.ended_at_least(2)  # a1; a2 waits behind it
        assert dispatcher.reserve() and dispatcher.reserve()  # two turns hold the other slots
        assert not dispatcher.reserve()  # a third finds none: its reply waits for a claim
        async with storage.unit_of_work() as uow:
            await uow.outbox.add([OutboxMessage("chat", "B", {"label": "b1"})])
            await uow.commit()
        dispatcher.wake("B")
        await asyncio.sleep(0.1)  # the loop looks: no slot free, so it claims nothing
        dispatcher.release()
        dispatcher.release()
        gate.set()
        async with asyncio.timeout(20):
            await done.wait()
    finally:
        await dispatcher.stop()
    assert sorted(delivered) == ["a1", "a2", "b1"]
    assert loop_claims.began == 2  # b1 was claimed by a1's settle


class AllClaims:
    """Every claim of the oldest messages, the loop's and the settles' (a settle's claim of
    its chat's next reply is part of its own write, not counted): the limit of each."""

    def __init__(self, dispatcher: OutboxDispatcher) -> None:
        self.limits: list[int] = []
        claim_now = dispatcher._claim_now

        async def counted(limit: int) -> list[OutboxMessage] | None:
            self.limits.append(limit)
            return await claim_now(limit)

        dispatcher._claim_now = counted  # type: ignore[method-assign]


class Gate:
    """Sends wait here; `let_one` lets the longest waiting one go, as the send limit does."""

    def __init__(self) -> None:
        self.waiting: list[asyncio.Future[None]] = []
        self.arrived = asyncio.Event()

    async def send(self, _message: OutboxMessage) -> Outcome:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        self.arrived.set()
        await future
        return Outcome.done()

    async def until_waiting(self, count: int) -> None:
        async with asyncio.timeout(20):
            while len(self.waiting) < count:
                self.arrived.clear()
                await self.arrived.wait()

    def let_one(self) -> None:
        self.waiting.pop(0).set_result(None)


async def _backlog(storage: SqlStorage, chats: int) -> None:
    """One reply for each of `chats` chats."""
    async with storage.unit_of_work() as uow:
        await uow.outbox.add([OutboxMessage("chat", f"c{n}", {"n": n}) for n in range(chats)])
        await uow.commit()


async def test_with_a_backlog_the_oldest_messages_are_claimed_a_batch_at_a_time(
    storage: SqlStorage,
) -> None:
    """Every slot is taken and more replies wait (Telegram's send limit lets one go at a
    time; a turn wakes the loop after each). A claim of the oldest reads every key's head, the
    whole backlog: it waits until a sixteenth of the slots are free, and then fills them all.
    Claiming one message per send read a backlog of 20,000 replies 30 times a second."""
    gate = Gate()
    dispatcher = OutboxDispatcher(
        storage, "chat", gate.send, poll_interval=3600, concurrency=64, stop_grace_seconds=0
    )
    assert dispatcher.backlog_claim_batch == 4
    settled = asyncio.Event()
    dispatcher.observers.append(lambda _message, _outcome: settled.set())
    claims = AllClaims(dispatcher)
    await _backlog(storage, 64 + 40)
    dispatcher.start()
    try:
        await gate.until_waiting(64)
        assert claims.limits == [64]
        for sent in range(1, 41):
            settled.clear()
            gate.let_one()
            async with asyncio.timeout(20):
                await settled.wait()
            dispatcher.wake()  # a turn's reply, written with no slot free
            await asyncio.sleep(0.01)  # the slot is freed; the loop looks
            # Every fourth send's settle refills the four slots freed so far.
            await gate.until_waiting(64 if sent % 4 == 0 else 64 - sent % 4)
    finally:
        await dispatcher.stop()
    assert claims.limits == [64] + [4] * 10
    async with storage.unit_of_work() as uow:
        statuses = Counter(m.status for m in await uow.outbox.list(limit=1000))
        await uow.commit()
    # The stop cancelled the 64 sends still waiting; their leases expire and they go again.
    assert statuses == {"done": 40, "pending": 64}


async def test_fewer_free_slots_than_a_batch_are_claimed_at_the_poll(storage: SqlStorage) -> None:
    """Three sends end and nothing else happens: the three slots they free are not left
    empty while replies wait; the loop's poll claims them."""
    gate = Gate()
    dispatcher = OutboxDispatcher(
        storage, "chat", gate.send, poll_interval=0.3, concurrency=64, stop_grace_seconds=0
    )
    claims = AllClaims(dispatcher)
    await _backlog(storage, 64 + 10)
    dispatcher.start()
    try:
        await gate.until_waiting(64)
        for _ in range(3):
            gate.let_one()
        await gate.until_waiting(64)  # refilled
    finally:
        await dispatcher.stop()
    # No settle claimed (fewer than four slots free); the poll did, in one claim or more.
    assert claims.limits[0] == 64 and sum(claims.limits[1:]) == 3, claims.limits
