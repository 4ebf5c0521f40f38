"""A channel turn's other rows written with its save (`UnitOfWork.commit_turn(writes=...)`):
the reply's outbox row, claimed for the writer unless an earlier message of its chat is still
pending, and the person's chat message id, after a read of the chat's conversation that may
be unlocked (`read_active_for_turn`).

Whatever the backend (memory, SQLite, PostgreSQL; on PostgreSQL unlocked, the write one
statement that commits by itself, or inside a transaction already begun): they are written
only if the turn's write happens, the reply is claimed as `Outbox.add(claim_for=...)` claims,
and a turn overtaken or already answered leaves no outbox row and no message id behind.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from bot.engine.types import ConversationState
from bot.ports import (
    ChatMessageIds,
    ConcurrencyError,
    ConversationRecord,
    DuplicateError,
    OutboxMessage,
    OvertakenError,
    Storage,
    TranscriptEntry,
    TurnWrites,
)
from storage.sqlalchemy_storage import SqlStorage

NOW = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)
TOPIC = "telegram.send"
CHAT = "4242"
SCOPE = "telegram:test"


def _unlocked(storage: Storage) -> Storage:
    """PostgreSQL reads a turn without the lock (`UNLOCKED_TURNS`, whatever its default)."""
    if isinstance(storage, SqlStorage):
        storage.unlocked_turns = True
    return storage


async def _open(storage: Storage) -> None:
    record = ConversationRecord(
        id="c1",
        channel="telegram",
        state=ConversationState(step="welcome"),
        created_at=NOW,
        updated_at=NOW,
        channel_key=CHAT,
    )
    async with storage.unit_of_work() as uow:
        await uow.commit_new(record, [])


def _writes(said: str, chat_message_id: int | None, claim_for: float | None = 30) -> TurnWrites:
    """The reply's outbox row (saying `said`) and the person's message id, as a Telegram turn
    of conversation c1 writes them."""
    payload = {"chat_id": CHAT, "conversation_id": "c1", "said": said}
    kept = (
        None
        if chat_message_id is None
        else ChatMessageIds("telegram", CHAT, (chat_message_id,), "c1")
    )
    return TurnWrites(
        NOW,
        reply=OutboxMessage(TOPIC, CHAT, payload, conversation_id="c1"),
        claim_for=claim_for,
        chat_message=kept,
    )


def _apply(record: ConversationRecord, said: str) -> list[TranscriptEntry]:
    record.state = ConversationState(step=said, answers={"said": said})
    seq = record.transcript_seq
    record.transcript_seq = seq + 1
    return [TranscriptEntry(seq, "user", {"text": said}, NOW)]


async def _read(storage: Storage) -> ConversationRecord:
    """The chat's conversation as a turn reads it, in a unit of work of its own (so, once
    another turn commits, stale)."""
    async with storage.unit_of_work() as uow:
        record, _ = await uow.conversations.read_active_for_turn(
            "telegram", CHAT, scope=SCOPE, message_id="any"
        )
        await uow.commit()
    assert record is not None
    return record


async def _turn(storage: Storage, said: str, writes: TurnWrites) -> list[OutboxMessage]:
    """A turn of the chat's conversation, for update `said`: its claimed messages."""
    async with storage.unit_of_work() as uow:
        record, prior = await uow.conversations.read_active_for_turn(
            "telegram", CHAT, scope=SCOPE, message_id=said
        )
        assert record is not None and prior is None
        entries = _apply(record, said)
        return await uow.commit_turn(
            record, entries, scope=SCOPE, message_id=said, reply={"said": said}, writes=writes
        )


async def _written(storage: Storage) -> tuple[int, list[tuple[Any, int, str]], list[int]]:
    """The conversation's revision; the chat's outbox rows, oldest first (what they say,
    attempts, status); the message ids kept for the chat (read, not taken: rolled back)."""
    async with storage.unit_of_work() as uow:
        record = await uow.conversations.get("c1")
        rows = sorted(await uow.outbox.list(topic=TOPIC), key=lambda m: m.id or 0)
        kept = await uow.chat_messages.take("telegram", CHAT)
    assert record is not None
    return record.revision, [(m.payload["said"], m.attempts, m.status) for m in rows], kept


async def test_the_reply_and_the_message_id_are_written_with_the_turn(
    any_storage: Storage,
) -> None:
    storage = _unlocked(any_storage)
    await _open(storage)
    writes = _writes("u1", 501)
    claimed = await _turn(storage, "u1", writes)
    assert claimed == [writes.reply]
    assert writes.reply is not None and writes.reply.id is not None
    assert writes.reply.attempts == 1 and writes.reply.created_at is not None
    assert await _written(storage) == (1, [("u1", 1, "pending")], [501])
    async with storage.unit_of_work() as uow:  # leased to the writer: no claim finds it
        assert await uow.outbox.claim(TOPIC, limit=10, lease_seconds=30) == []
        await uow.commit()


async def test_a_reply_behind_a_pending_one_waits_for_the_claim(any_storage: Storage) -> None:
    """Claimed only if no earlier message of the chat is still pending, as `Outbox.add`;
    unclaimed when the writer asks for no claim. The rows keep the turns' order."""
    storage = _unlocked(any_storage)
    await _open(storage)
    first = _writes("u1", 501).reply
    assert first is not None
    assert await _turn(storage, "u1", TurnWrites(NOW, first, 30, None)) == [first]
    assert await _turn(storage, "u2", _writes("u2", 502)) == []
    assert await _turn(storage, "u3", _writes("u3", None, claim_for=None)) == []
    revision, rows, kept = await _written(storage)
    assert revision == 3 and kept == [502]
    assert rows == [("u1", 1, "pending"), ("u2", 0, "pending"), ("u3", 0, "pending")]
    assert first.id is not None
    async with storage.unit_of_work() as uow:
        await uow.outbox.mark_done(first.id)
        claimed = await uow.outbox.claim(TOPIC, limit=10, lease_seconds=30)
        await uow.commit()
    assert [m.payload["said"] for m in claimed] == ["u2"]


async def test_nothing_is_written_when_the_turn_is_overtaken(any_storage: Storage) -> None:
    """The revision check fails (another turn committed since the read): no outbox row and
    no message id."""
    storage = _unlocked(any_storage)
    await _open(storage)
    stale = await _read(storage)
    await _turn(storage, "u1", _writes("u1", 501))
    before = await _written(storage)
    with pytest.raises(ConcurrencyError):
        async with storage.unit_of_work() as uow:
            entries = _apply(stale, "u2")
            await uow.commit_turn(
                stale, entries, scope=SCOPE, message_id="u2", reply={}, writes=_writes("u2", 502)
            )
    assert await _written(storage) == before


async def test_nothing_is_written_for_a_message_id_already_answered(any_storage: Storage) -> None:
    storage = _unlocked(any_storage)
    await _open(storage)
    await _turn(storage, "u1", _writes("u1", 501))
    before = await _written(storage)
    with pytest.raises(DuplicateError):
        async with storage.unit_of_work() as uow:
            record, prior = await uow.conversations.read_active_for_turn(
                "telegram", CHAT, scope=SCOPE, message_id="u1"
            )
            assert record is not None and prior == {"said": "u1"}  # the replay
            entries = _apply(record, "again")
            await uow.commit_turn(
                record, entries, scope=SCOPE, message_id="u1", reply={}, writes=_writes("x", 9)
            )
    assert await _written(storage) == before


async def test_with_a_transaction_begun_they_are_written_in_it(any_storage: Storage) -> None:
    """A turn that wrote something else first (a report, an erasure, the exit's deletes: here
    an outbox row of its own) commits the reply and the message id with it all, claimed as
    ever; overtaken, none of it."""
    storage = _unlocked(any_storage)
    await _open(storage)
    async with storage.unit_of_work() as uow:
        record, _ = await uow.conversations.read_active_for_turn(
            "telegram", CHAT, scope=SCOPE, message_id="u1"
        )
        assert record is not None
        await uow.outbox.add([OutboxMessage(TOPIC, CHAT, {"said": "before"})])
        entries = _apply(record, "u1")
        writes = _writes("u1", 501)
        claimed = await uow.commit_turn(
            record, entries, scope=SCOPE, message_id="u1", reply={}, writes=writes
        )
    assert claimed == []  # behind the row written first in the same transaction
    assert await _written(storage) == (1, [("before", 0, "pending"), ("u1", 0, "pending")], [501])
    stale = await _read(storage)
    await _turn(storage, "u2", _writes("u2", 502))
    before = await _written(storage)
    with pytest.raises(ConcurrencyError):
        async with storage.unit_of_work() as uow:
            await uow.outbox.add([OutboxMessage(TOPIC, CHAT, {"said": "lost"})])
            entries = _apply(stale, "u3")
            await uow.commit_turn(
                stale, entries, scope=SCOPE, message_id="u3", reply={}, writes=_writes("u3", 503)
            )
    assert await _written(storage) == before


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_reads_the_chat_unlocked_and_an_overtaken_turn_writes_nothing(
    storage: SqlStorage,
) -> None:
    """The read does not wait for a turn holding the conversation's lock (it runs outside a
    transaction); a turn committed between the read and the write makes the write fail with
    OvertakenError, leaving no outbox row and no message id; with `unlocked_turns` off the
    read locks as `find_active_for_turn` does."""
    storage.unlocked_turns = True
    await _open(storage)
    assert await _read_while_locked(storage, wait=2) is not None
    async with storage.unit_of_work() as late:
        record, _ = await late.conversations.read_active_for_turn(
            "telegram", CHAT, scope=SCOPE, message_id="u2"
        )
        assert record is not None
        await _turn(storage, "u1", _writes("u1", 501))
        before = await _written(storage)
        with pytest.raises(OvertakenError):
            await late.commit_turn(
                record,
                _apply(record, "u2"),
                scope=SCOPE,
                message_id="u2",
                reply={},
                writes=_writes("u2", 502),
            )
    assert await _written(storage) == before
    storage.unlocked_turns = False
    with pytest.raises(TimeoutError):  # waits for the holder's lock
        await _read_while_locked(storage, wait=0.5)


async def _read_while_locked(storage: SqlStorage, *, wait: float) -> ConversationRecord | None:
    """`read_active_for_turn` while another unit of work holds the conversation's lock;
    TimeoutError if it waited `wait` seconds for it."""
    async with storage.unit_of_work() as holder:
        locked, _ = await holder.conversations.find_active_for_turn(
            "telegram", CHAT, scope=SCOPE, message_id="x"
        )
        assert locked is not None
        async with storage.unit_of_work() as uow:
            read = uow.conversations.read_active_for_turn(
                "telegram", CHAT, scope=SCOPE, message_id="u1"
            )
            record, _ = await asyncio.wait_for(read, wait)
            await uow.commit()
    return record


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_new_connections_ask_the_server_about_no_type(
    storage: SqlStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Telegram turn's statements, a settle's message ids and the dispatcher's claim use
    only types asyncpg encodes by itself. An array of bigint or varchar made asyncpg ask
    the server what the type is on every new connection (three round trips and a heavy
    catalog query each): a fresh server opening its connections under load stalled for
    seconds (BENCHMARKS.md). The connections here are all new (a storage of its own)."""
    asked: list[object] = []
    introspect = asyncpg.Connection._introspect_types

    async def recording(self: asyncpg.Connection, typeoids: object, *args: object) -> object:
        asked.append(typeoids)
        return await introspect(self, typeoids, *args)

    monkeypatch.setattr(asyncpg.Connection, "_introspect_types", recording)
    storage.unlocked_turns = True
    await _open(storage)
    await _turn(storage, "u1", _writes("u1", 501, claim_for=None))
    async with storage.unit_of_work() as uow:
        await uow.chat_messages.add(ChatMessageIds("telegram", CHAT, (502, 2**40), "c1"), at=NOW)
        claimed = await uow.outbox.claim([TOPIC, "other"], limit=10, lease_seconds=30)
        await uow.commit()
    assert [m.payload["said"] for m in claimed] == ["u1"]
    assert await _written(storage) == (1, [("u1", 1, "pending")], [501, 502, 2**40])
    assert asked == []
