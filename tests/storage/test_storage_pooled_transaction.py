"""The SQL unit of work on the driver's connection (`storage.db.PooledTransaction`).

A turn's statements run on the driver and the commit is the driver's, while other statements
in the same unit of work go through SQLAlchemy: they must all share one transaction, a unit
of work left without `commit()` must undo all of them, and the connection must come back to
the pool with no transaction open, on SQLite (one writer, BEGIN IMMEDIATE) and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.engine.types import ConversationState
from bot.ports import ConversationRecord, OutboxMessage, TranscriptEntry
from storage.sqlalchemy_storage import SqlStorage


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
