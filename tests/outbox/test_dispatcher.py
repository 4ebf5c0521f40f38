"""The dispatcher's own rules, on a real database: bounded attempts end in a dead letter,
a delivered message keeps only its audit fields, each topic goes to its adapter."""

from __future__ import annotations

import asyncio

from bot.outbox.dispatcher import OutboxDispatcher, Outcome
from bot.ports import OutboxMessage
from storage.sqlalchemy_storage import SqlStorage


async def test_retries_are_bounded_then_dead_lettered_and_bodies_erased_on_delivery(
    storage: SqlStorage,
) -> None:
    calls: list[tuple[str, int]] = []
    settled = asyncio.Event()

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

    async def wait_until_settled() -> None:
        while True:
            async with storage.unit_of_work() as uow:
                pending = await uow.outbox.list(status="pending")
            if not pending and not dispatcher.inflight:
                settled.set()
                return
            await asyncio.sleep(0.02)

    dispatcher.start()
    try:
        await asyncio.wait_for(wait_until_settled(), 20)
    finally:
        await dispatcher.stop()
    assert calls.count(("webhook", 1)) == 1
    assert [c for c in calls if c[0] == "email"] == [("email", 1), ("email", 2), ("email", 3)]
    async with storage.unit_of_work() as uow:
        (dead,) = await uow.outbox.list(status="failed")
        (done,) = await uow.outbox.list(status="done")
    assert dead.topic == "email" and dead.last_error == "gave_up_refused"
    assert done.payload == {"kind": "handoff", "reference": "R1"}
