"""A Telegram turn's read on the driver's connection (`storage.turns.*_find_active_for_turn`).

It replaced a statement run through SQLAlchemy; it must return exactly what that statement
returned (kept here as the reference), on SQLite and PostgreSQL, found or not, and hold the
conversation's lock as the read by id does (the row lock on PostgreSQL, re-checked after the
wait; the single writer on SQLite).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, event, func, select

from bot.engine.types import ConversationState
from bot.ports import Channel, ConversationRecord, TranscriptEntry
from storage.db import Db
from storage.models import conversations, inbound_messages, transcript_entries
from storage.repositories import GET_INBOUND_REPLY
from storage.repositories import _conversation as conversation_from_row
from storage.sqlalchemy_storage import SqlStorage, SqlUnitOfWork
from storage.turns import pg_find_active_for_turn, sqlite_find_active_for_turn

# The read as it was built with SQLAlchemy before it moved to the driver.
_AFTER_LAST_LINE = (
    select(func.coalesce(func.max(transcript_entries.c.seq), 0) + 1)
    .where(transcript_entries.c.conversation_id == conversations.c.id)
    .scalar_subquery()
)
REFERENCE = (
    select(
        conversations,
        select(inbound_messages.c.reply)
        .where(
            inbound_messages.c.scope == bindparam("scope"),
            inbound_messages.c.message_id == bindparam("message_id"),
        )
        .scalar_subquery()
        .label("prior_reply"),
        case(
            (_AFTER_LAST_LINE > conversations.c.transcript_seq, _AFTER_LAST_LINE),
            else_=conversations.c.transcript_seq,
        ).label("next_seq"),
    )
    .where(
        conversations.c.channel == bindparam("channel"),
        conversations.c.channel_key == bindparam("channel_key"),
        conversations.c.status == "active",
    )
    .order_by(conversations.c.created_at.desc(), conversations.c.id.desc())
    .limit(1)
    .with_for_update(of=conversations)
)


async def _reference(
    db: Db, channel: Channel, channel_key: str, *, scope: str, message_id: str
) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
    parameters = {
        "channel": channel,
        "channel_key": channel_key,
        "scope": scope,
        "message_id": message_id,
    }
    row = (await db.execute(REFERENCE, parameters)).first()
    if row is None:
        reply = (await db.execute(GET_INBOUND_REPLY, parameters)).scalar_one_or_none()
        return None, None if reply is None else dict(reply)
    return conversation_from_row(row), None if row.prior_reply is None else dict(row.prior_reply)


def _db(uow: object) -> Db:
    assert isinstance(uow, SqlUnitOfWork) and uow._db is not None
    return uow._db


def _conversation(
    conversation_id: str, *, channel_key: str = "chat-1", status: str = "active", age: int = 0
) -> ConversationRecord:
    at = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC) - timedelta(minutes=age)
    return ConversationRecord(
        id=conversation_id,
        channel="telegram",
        state=ConversationState(
            step="experience",
            locale="uk",
            answers={"what": "Rosé – ünïcode", "nested": {"a": [1, 2.5, None]}},
            history=["welcome", "consent"],
            status=status,  # type: ignore[arg-type]
            scratch={"matches": ["x"]},
        ),
        created_at=at,
        updated_at=at + timedelta(seconds=1),
        revision=3,
        token_hash=None,
        channel_key=channel_key,
        reference="REF-42" if status == "active" else None,
        transcript_seq=2,
    )


CASES = [
    # (channel, channel key, message id)
    ("telegram", "chat-1", "u1"),  # active conversation, message answered before
    ("telegram", "chat-1", "u2"),  # active conversation, new message
    ("telegram", "chat-2", "u1"),  # only an ended conversation: none, but the prior reply
    ("telegram", "chat-2", "u3"),  # only an ended conversation, new message
    ("telegram", "chat-9", "u1"),  # no conversation at all (a chat's first message)
    ("telegram", "chat-9", "u3"),
    ("web", "chat-1", "u2"),  # another channel's address
]


async def test_the_read_returns_what_the_sqlalchemy_statement_returned(
    storage: SqlStorage,
) -> None:
    async with storage.unit_of_work() as uow:
        await uow.conversations.add(_conversation("c-active"))
        await uow.conversations.add(_conversation("c-older-ended", status="ended", age=5))
        await uow.conversations.add(
            _conversation("c-ended", channel_key="chat-2", status="ended", age=1)
        )
        # Lines written without advancing the counter (a worker before migration 0003):
        # the next number comes from the lines.
        at = datetime.now(UTC)
        await uow.transcripts.append(
            "c-active", [TranscriptEntry(n, "bot", {"text": str(n)}, at) for n in (1, 2, 3, 4)]
        )
        await uow.inbound.put("telegram", "u1", {"step": "welcome", "said": ["hi", "ünï"]})
        await uow.commit()
    find = pg_find_active_for_turn if storage.engine.dialect.name == "postgresql" else None
    find = find or sqlite_find_active_for_turn
    for channel, key, message_id in CASES:
        async with storage.unit_of_work() as uow:
            ours = await find(_db(uow), channel, key, scope="telegram", message_id=message_id)  # type: ignore[arg-type]
        async with storage.unit_of_work() as uow:
            expected = await _reference(
                _db(uow),
                channel,  # type: ignore[arg-type]
                key,
                scope="telegram",
                message_id=message_id,
            )
        assert ours == expected, (channel, key, message_id)
    # And through the repository, which the service calls: on the driver's connection,
    # nothing through SQLAlchemy's execution.
    through_sqlalchemy: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        through_sqlalchemy.append(statement)

    event.listen(storage.engine.sync_engine, "before_cursor_execute", seen)
    try:
        async with storage.unit_of_work() as uow:
            record, prior = await uow.conversations.find_active_for_turn(
                "telegram", "chat-1", scope="telegram", message_id="u1"
            )
        async with storage.unit_of_work() as uow:
            assert await uow.conversations.find_active_for_turn(
                "telegram", "chat-9", scope="telegram", message_id="u1"
            ) == (None, {"step": "welcome", "said": ["hi", "ünï"]})
    finally:
        event.remove(storage.engine.sync_engine, "before_cursor_execute", seen)
    assert through_sqlalchemy == []
    assert record is not None and record.id == "c-active" and record.transcript_seq == 5
    assert record.created_at == _conversation("c-active").created_at
    assert record.created_at.tzinfo is not None
    assert record.state == _conversation("c-active").state
    assert prior == {"step": "welcome", "said": ["hi", "ünï"]}
    async with storage.unit_of_work() as uow:
        assert await uow.conversations.find_active_for_turn(
            "telegram", "chat-2", scope="telegram", message_id="u1"
        ) == (None, {"step": "welcome", "said": ["hi", "ünï"]})


async def test_the_read_holds_the_conversations_lock(storage: SqlStorage) -> None:
    """A second turn of the chat waits until the first one's unit of work ends; if that one
    ended the conversation, the second finds none (PostgreSQL checks the row again after
    waiting for its lock; on SQLite the second reads only once it has the writer)."""
    async with storage.unit_of_work() as uow:
        await uow.conversations.add(_conversation("c1"))
        await uow.commit()
    second_read = asyncio.Event()

    async def second() -> ConversationRecord | None:
        async with storage.unit_of_work() as uow:
            record, _ = await uow.conversations.find_active_for_turn(
                "telegram", "chat-1", scope="telegram", message_id="u2"
            )
            second_read.set()
            return record

    async with storage.unit_of_work() as uow:
        record, _ = await uow.conversations.find_active_for_turn(
            "telegram", "chat-1", scope="telegram", message_id="u1"
        )
        assert record is not None
        waiting = asyncio.create_task(second())
        await asyncio.sleep(0.3)
        assert not second_read.is_set()
        record.state.status = "ended"
        await uow.save_turn(record, [], scope="telegram", message_id="u1", reply={"n": 1})
        await uow.commit()
    assert await asyncio.wait_for(waiting, 10) is None
