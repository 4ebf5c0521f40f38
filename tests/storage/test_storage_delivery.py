"""The delivery side of the storage contract, on every implementation (memory, SQLite,
PostgreSQL): idempotent outbox writes, dead letters,
erased bodies, topic statistics, acknowledgements, shared secrets, the NOTIFY wake-up."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

from bot.ports import AlertSubscription, OutboxMessage, Storage
from tests.storage.conftest import Clock
from tests.storage.test_storage_contract import location, report


@pytest.fixture
def storage(any_storage: Storage) -> Storage:
    """Part of the contract suite: every implementation of the ports."""
    return any_storage


async def add(storage: Storage, *messages: OutboxMessage) -> None:
    async with storage.unit_of_work() as uow:
        await uow.outbox.add(list(messages))
        await uow.commit()


async def test_a_message_with_a_known_idempotency_key_is_written_once(
    storage: Storage,
) -> None:
    first = OutboxMessage(
        "email", "ABCD-EFGH", {"kind": "acknowledgement"}, idempotency_key="ABCD-EFGH:ack"
    )
    await add(storage, first)
    again = OutboxMessage(
        "email", "ABCD-EFGH", {"kind": "acknowledgement"}, idempotency_key="ABCD-EFGH:ack"
    )
    other = OutboxMessage(
        "webhook", "ABCD-EFGH", {"kind": "handoff"}, idempotency_key="ABCD-EFGH:handoff"
    )
    await add(storage, again, other)
    assert first.id is not None and again.id is None and other.id is not None
    async with storage.unit_of_work() as uow:
        listed = await uow.outbox.list(key_prefix="ABCD-EFGH:")
    assert sorted(m.idempotency_key or "" for m in listed) == ["ABCD-EFGH:ack", "ABCD-EFGH:handoff"]


async def test_done_keeps_only_the_audit_payload_and_dead_letters_can_be_retried_or_purged(
    storage: Storage,
) -> None:
    sent = OutboxMessage("email", "k1", {"kind": "ack", "reference": "R", "to": "a@example.org"})
    dead = OutboxMessage("email", "k2", {"kind": "ack", "reference": "S", "to": "b@example.org"})
    doomed = OutboxMessage("email", "k3", {"kind": "ack", "reference": "T"})
    await add(storage, sent, dead, doomed)
    assert sent.id and dead.id and doomed.id
    async with storage.unit_of_work() as uow:
        claimed = await uow.outbox.claim(["email"], limit=10, lease_seconds=30)
        assert len(claimed) == 3
        await uow.outbox.mark_done(sent.id, keep={"kind": "ack", "reference": "R"})
        await uow.outbox.mark_failed(dead.id, error="gave_up_refused")
        await uow.outbox.mark_failed(doomed.id, error="rejected")
        await uow.commit()
    async with storage.unit_of_work() as uow:
        done = await uow.outbox.list(status="done")
        failed = await uow.outbox.list(status="failed")
        stats = await uow.outbox.stats()
    assert [m.payload for m in done] == [{"kind": "ack", "reference": "R"}]
    assert {m.id for m in failed} == {dead.id, doomed.id}
    assert [(s.topic, s.pending, s.failed) for s in stats] == [("email", 0, 2)]
    async with storage.unit_of_work() as uow:
        assert await uow.outbox.requeue([dead.id]) == 1
        assert await uow.outbox.purge() == 1
        await uow.commit()
    async with storage.unit_of_work() as uow:
        again = await uow.outbox.claim("email", limit=10, lease_seconds=30)
        assert [(m.id, m.attempts) for m in again] == [(dead.id, 1)]
        assert await uow.outbox.list(status="failed") == []


async def test_stats_report_depth_and_oldest_pending_per_topic(
    storage: Storage, clock: Clock
) -> None:
    before = datetime.now(UTC)
    await add(storage, OutboxMessage("email", "a", {}), OutboxMessage("email", "b", {}))
    clock.advance(60)
    await add(storage, OutboxMessage("webhook", "a", {}))
    async with storage.unit_of_work() as uow:
        stats = {s.topic: s for s in await uow.outbox.stats()}
    assert stats["email"].pending == 2 and stats["webhook"].pending == 1
    oldest = stats["email"].oldest_pending_at
    assert oldest is not None and oldest.tzinfo is not None
    assert abs((oldest - before).total_seconds()) < 30


async def test_the_first_acknowledgement_stands(storage: Storage) -> None:
    now = datetime.now(UTC)
    async with storage.unit_of_work() as uow:
        await uow.reports.add(report("URG1-AAAA", "urgent", now))
        await uow.reports.add(report("REV1-AAAA", "urgent_review", now))
        await uow.reports.add(report("ROU1-AAAA", "routine", now))
        assert await uow.reports.count_unacknowledged_urgent() == 2
        first = await uow.reports.acknowledge("URG1-AAAA", by="oncall@example.org", at=now)
        later = await uow.reports.acknowledge("URG1-AAAA", by="someone@example.org", at=now)
        assert await uow.reports.acknowledge("NONE-NONE", by="x", at=now) is None
        await uow.commit()
    assert first is not None and later == first and first.by == "oncall@example.org"
    async with storage.unit_of_work() as uow:
        assert await uow.reports.count_unacknowledged_urgent() == 1
        assert await uow.reports.acknowledgement("ROU1-AAAA") is None


async def test_a_secret_is_made_once_and_shared(storage: Storage) -> None:
    async with storage.unit_of_work() as uow:
        first = await uow.secrets.get_or_create("links", lambda: "first")
        await uow.commit()
    async with storage.unit_of_work() as uow:
        second = await uow.secrets.get_or_create("links", lambda: "second")
    assert first == second == "first"


async def test_a_new_outbox_row_wakes_a_listener(storage: Storage) -> None:
    """Where the storage can notify (PostgreSQL, memory) the listener says "" once listening,
    then the topic of each committed outbox row; where it cannot (SQLite) `listen_outbox`
    returns at once and the dispatcher polls."""
    woken: asyncio.Queue[str] = asyncio.Queue()
    listener = asyncio.create_task(storage.listen_outbox(woken.put_nowait))
    first = asyncio.create_task(woken.get())
    try:
        await asyncio.wait({listener, first}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if listener.done():
            listener.result()
            return
        assert first.result() == ""  # listening now
        await add(storage, OutboxMessage("email", "k", {}))
        while (topic := await asyncio.wait_for(woken.get(), 10)) != "email":
            pass  # another test's schema may notify too: the channel is per database
        assert topic == "email"
    finally:
        first.cancel()
        listener.cancel()
        await asyncio.gather(listener, first, return_exceptions=True)


async def test_alert_subscriptions_opt_in_newer_inspections_and_stop(
    storage: Storage,
) -> None:
    now = datetime.now(UTC)
    await storage.directory.replace_all(
        [location("1-1", last_checked=date(2025, 1, 10)), location("1-2", name="Elm Court")]
    )

    async def subscribe(email: str, location_id: str, token: str) -> AlertSubscription | None:
        async with storage.unit_of_work() as uow:
            added = await uow.subscriptions.add_pending(
                email=email,
                location_id=location_id,
                locale="cy",
                token=token,
                last_checked_seen=date(2025, 1, 10) if location_id == "1-1" else None,
                now=now,
            )
            await uow.commit()
        return added

    assert await subscribe("a@example.org", "1-1", "tok-a") is not None
    assert await subscribe("a@example.org", "1-1", "tok-again") is None  # one per address
    assert await subscribe("b@example.org", "1-1", "tok-b") is not None  # never confirmed
    async with storage.unit_of_work() as uow:
        confirmed = await uow.subscriptions.confirm("tok-a", now=now)
        assert confirmed is not None and confirmed.status == "confirmed"
        assert await uow.subscriptions.newer_inspections() == []  # nothing new yet
        await uow.commit()

    await storage.directory.replace_all(
        [location("1-1", last_checked=date(2025, 6, 1)), location("1-2", name="Elm Court")]
    )
    async with storage.unit_of_work() as uow:
        (news,) = await uow.subscriptions.newer_inspections()
        assert news.subscription.email == "a@example.org" and news.subscription.locale == "cy"
        assert news.location.last_checked == date(2025, 6, 1)
        await uow.subscriptions.mark_told(news.subscription.id, date(2025, 6, 1))
        await uow.commit()
    async with storage.unit_of_work() as uow:
        assert await uow.subscriptions.newer_inspections() == []
        assert await uow.subscriptions.drop_unconfirmed(now + timedelta(days=8)) == 1
        removed = await uow.subscriptions.remove("tok-a")
        assert removed is not None and await uow.subscriptions.get("tok-a") is None
        assert await uow.subscriptions.remove("tok-a") is None
        await uow.commit()
