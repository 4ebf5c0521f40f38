"""A settle that commits by itself (`Outbox.settle_done`, `retry_later`/`mark_failed`/`claim`
with `commit=True`), on every backend: what it writes, what it keeps only if the message is
still there, and that the unit of work is over after it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.ports import ChatMessageIds, OutboxMessage, Storage, StorageError

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SENT = ChatMessageIds("telegram", "c1", (11, 12))


async def _add(storage: Storage, *labels: str) -> list[int]:
    messages = [OutboxMessage("chat", "c1", {"kind": "reply", "text": label}) for label in labels]
    async with storage.unit_of_work() as uow:
        await uow.outbox.add(messages)
        await uow.commit()
    return [message.id for message in messages if message.id is not None]


async def _claim(storage: Storage) -> list[OutboxMessage]:
    async with storage.unit_of_work() as uow:
        return await uow.outbox.claim("chat", limit=10, lease_seconds=30, commit=True)


async def test_a_done_settle_keeps_the_sent_ids_and_frees_the_chats_next_message(
    any_storage: Storage,
) -> None:
    first, second = await _add(any_storage, "one", "two")
    assert [message.id for message in await _claim(any_storage)] == [first]
    assert await _claim(any_storage) == []  # the second waits behind the first
    async with any_storage.unit_of_work() as uow:
        await uow.outbox.settle_done(first, keep={"kind": "reply"}, sent=SENT, at=AT)
        with pytest.raises(StorageError):
            await uow.commit()  # committed already: the unit of work is over
    # The settle is committed: a claim of its own finds the chat's next message.
    assert [message.id for message in await _claim(any_storage)] == [second]
    async with any_storage.unit_of_work() as uow:
        done = await uow.outbox.list(status="done")
        taken = await uow.chat_messages.take("telegram", "c1")
        await uow.commit()
    assert [(message.id, message.payload) for message in done] == [(first, {"kind": "reply"})]
    assert taken == [11, 12]


async def test_a_done_settle_of_a_message_gone_keeps_no_ids(any_storage: Storage) -> None:
    """The message was deleted meanwhile (as an erasure of its conversation deletes it): the
    ids of what was sent are not kept either, since nothing would erase them."""
    (message_id,) = await _add(any_storage, "one")
    async with any_storage.unit_of_work() as uow:
        await uow.outbox.mark_failed(message_id, error="gone", commit=True)
    async with any_storage.unit_of_work() as uow:
        assert await uow.outbox.purge([message_id]) == 1
        await uow.commit()
    async with any_storage.unit_of_work() as uow:
        await uow.outbox.settle_done(message_id, keep={"kind": "reply"}, sent=SENT, at=AT)
    async with any_storage.unit_of_work() as uow:
        assert await uow.chat_messages.take("telegram", "c1") == []
        assert await uow.outbox.list() == []


async def test_a_done_settle_with_nothing_sent_to_keep(any_storage: Storage) -> None:
    (message_id,) = await _add(any_storage, "one")
    for sent in (None, ChatMessageIds("telegram", "c1", ())):
        async with any_storage.unit_of_work() as uow:
            await uow.outbox.settle_done(message_id, keep={}, sent=sent, at=AT)
    async with any_storage.unit_of_work() as uow:
        assert [message.status for message in await uow.outbox.list()] == ["done"]
        assert await uow.chat_messages.take("telegram", "c1") == []


async def test_retry_later_and_mark_failed_commit_by_themselves(any_storage: Storage) -> None:
    first, second = await _add(any_storage, "one", "two")
    async with any_storage.unit_of_work() as uow:
        await uow.outbox.retry_later(first, delay_seconds=3600, error="rate_limited", commit=True)
        with pytest.raises(StorageError):
            await uow.commit()
    async with any_storage.unit_of_work() as uow:
        await uow.outbox.mark_failed(second, error="blocked", commit=True)
    async with any_storage.unit_of_work() as uow:
        listed = {message.id: message for message in await uow.outbox.list()}
    assert (listed[first].status, listed[first].last_error) == ("pending", "rate_limited")
    assert (listed[second].status, listed[second].last_error) == ("failed", "blocked")
    assert await _claim(any_storage) == []  # the first is not due for an hour


async def test_a_done_settle_can_claim_the_chats_next_message_in_the_same_write(
    any_storage: Storage,
) -> None:
    """`claim_next_for`: the next message of the settled one's key, leased and counted as an
    attempt as a claim would, and nothing of another key (that one is the loop's)."""
    first, second, third = await _add(any_storage, "one", "two", "three")
    assert [message.id for message in await _claim(any_storage)] == [first]
    other = OutboxMessage("chat", "c2", {"kind": "reply"})
    async with any_storage.unit_of_work() as uow:
        await uow.outbox.add([other])
        await uow.commit()
    for settled, expected, text in ((first, second, "two"), (second, third, "three")):
        async with any_storage.unit_of_work() as uow:
            claimed = await uow.outbox.settle_done(
                settled, keep={"kind": "reply"}, sent=None, at=AT, claim_next_for=30
            )
            with pytest.raises(StorageError):
                await uow.commit()  # committed already: the unit of work is over
        assert [(message.id, message.attempts) for message in claimed] == [(expected, 1)]
        assert claimed[0].payload == {"kind": "reply", "text": text}
        # Leased: no claimer takes it again; the other chat's message was left for one.
        left = [other.id] if settled == first else []
        assert [message.id for message in await _claim(any_storage)] == left
    async with any_storage.unit_of_work() as uow:
        claimed = await uow.outbox.settle_done(third, keep={}, sent=SENT, at=AT, claim_next_for=30)
    assert claimed == []  # the chat has nothing more
    async with any_storage.unit_of_work() as uow:
        assert await uow.chat_messages.take("telegram", "c1") == [11, 12]
        statuses = {message.id: message.status for message in await uow.outbox.list()}
        await uow.commit()
    assert [statuses[n] for n in (first, second, third)] == ["done"] * 3


async def test_the_claim_in_a_settle_waits_for_a_next_message_not_yet_due(
    any_storage: Storage,
) -> None:
    """A next message waiting to be retried is not claimed early; and a settle of a message
    gone (erased meanwhile) claims nothing: the loop finds what is due."""
    first, second = await _add(any_storage, "one", "two")
    async with any_storage.unit_of_work() as uow:
        await uow.outbox.retry_later(second, delay_seconds=3600, error="rate_limited")
        await uow.commit()
    await _claim(any_storage)
    async with any_storage.unit_of_work() as uow:
        claimed = await uow.outbox.settle_done(first, keep={}, sent=None, at=AT, claim_next_for=30)
    assert claimed == []
    async with any_storage.unit_of_work() as uow:
        await uow.outbox.mark_failed(second, error="gone", commit=True)
    (third,) = await _add(any_storage, "three")
    async with any_storage.unit_of_work() as uow:
        assert await uow.outbox.purge([second]) == 1
        await uow.commit()
    async with any_storage.unit_of_work() as uow:
        claimed = await uow.outbox.settle_done(second, keep={}, sent=None, at=AT, claim_next_for=30)
    assert claimed == []
    assert [message.id for message in await _claim(any_storage)] == [third]
