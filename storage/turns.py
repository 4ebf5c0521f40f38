"""The write of one turn (`UnitOfWork.save_turn`) in as few statements as the backend allows.

PostgreSQL: one statement, so one round trip. Data-modifying CTEs update the conversation
(revision check, and only while the message id has no reply yet), then insert the transcript
lines and the reply, both only if that update happened:

    saved   UPDATE conversations ... WHERE id AND revision AND NOT handled RETURNING id
    lines   INSERT INTO transcript_entries SELECT ... FROM saved, jsonb_to_recordset(:lines)
    inbound INSERT INTO inbound_messages SELECT ... FROM saved ON CONFLICT DO NOTHING

The final SELECT reports what happened: updated?, reply inserted?, already handled? Every part
runs on one snapshot taken after the caller locked the conversation (`get_for_turn`), so a
reply committed by an earlier holder of that lock is seen by "handled", and the update writes
nothing when it is. ON CONFLICT only matters to a caller that writes without the lock; it keeps
the transaction usable and the error a DuplicateError.

SQLite cannot modify data in a CTE, but there is no network either: the same steps run as
separate statements on the single writer, which nobody else can interleave with.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

from bot.ports import ConversationRecord, TranscriptEntry
from storage.coltypes import UTCDateTime
from storage.db import Db
from storage.models import inbound_messages
from storage.repositories import (
    INSERT_TRANSCRIPT,
    SELECT_HANDLED,
    UPDATE_CONVERSATION,
    UPDATE_CONVERSATION_UNLESS_HANDLED,
    already_handled,
    saved_values,
    stale_revision,
    transcript_rows,
)

_TYPES = (
    bindparam("state", type_=JSONB),
    bindparam("updated_at", type_=UTCDateTime),
    bindparam("lines", type_=JSONB),
)

#: The turn of a message with an id: state, transcript and the reply, all or nothing.
PG_SAVE_TURN = text(
    """
    WITH saved AS (
        UPDATE conversations
        SET state = :state, status = :status, revision = revision + 1,
            reference = :reference, channel_key = :channel_key, token_hash = :token_hash,
            updated_at = :updated_at, transcript_seq = :transcript_seq
        WHERE id = :b_id AND revision = :b_revision
          AND NOT EXISTS (SELECT 1 FROM inbound_messages
                          WHERE scope = :scope AND message_id = :message_id)
        RETURNING id
    ),
    lines AS (
        INSERT INTO transcript_entries (conversation_id, seq, role, payload, created_at)
        SELECT saved.id, line.seq, line.role, line.payload, line.created_at
        FROM saved, jsonb_to_recordset(:lines)
            AS line(seq integer, role varchar, payload jsonb, created_at timestamptz)
    ),
    inbound AS (
        INSERT INTO inbound_messages (scope, message_id, reply, created_at, conversation_id)
        SELECT :scope, :message_id, :reply, :now, saved.id FROM saved
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM saved) AS saved,
           (SELECT count(*) FROM inbound) AS inbound,
           EXISTS (SELECT 1 FROM inbound_messages
                   WHERE scope = :scope AND message_id = :message_id) AS handled
    """
).bindparams(*_TYPES, bindparam("reply", type_=JSONB), bindparam("now", type_=UTCDateTime))

#: The turn of a message without an id: state and transcript.
PG_SAVE_TURN_WITHOUT_ID = text(
    """
    WITH saved AS (
        UPDATE conversations
        SET state = :state, status = :status, revision = revision + 1,
            reference = :reference, channel_key = :channel_key, token_hash = :token_hash,
            updated_at = :updated_at, transcript_seq = :transcript_seq
        WHERE id = :b_id AND revision = :b_revision
        RETURNING id
    ),
    lines AS (
        INSERT INTO transcript_entries (conversation_id, seq, role, payload, created_at)
        SELECT saved.id, line.seq, line.role, line.payload, line.created_at
        FROM saved, jsonb_to_recordset(:lines)
            AS line(seq integer, role varchar, payload jsonb, created_at timestamptz)
    )
    SELECT count(*) AS saved FROM saved
    """
).bindparams(*_TYPES)


def _line(entry: TranscriptEntry) -> dict[str, Any]:
    at: datetime = entry.created_at
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return {
        "seq": entry.seq,
        "role": entry.role,
        "payload": entry.payload,
        "created_at": at.isoformat(),
    }


async def save_turn(
    db: Db,
    record: ConversationRecord,
    entries: Sequence[TranscriptEntry],
    *,
    scope: str,
    message_id: str | None,
    reply: dict[str, Any] | None,
) -> None:
    """See `bot.ports.UnitOfWork.save_turn`."""
    if message_id is not None and reply is None:
        raise ValueError("a message id needs the reply to remember")
    if db.is_postgres:
        await _save_postgres(db, record, entries, scope=scope, message_id=message_id, reply=reply)
    else:
        await _save_sqlite(db, record, entries, scope=scope, message_id=message_id, reply=reply)
    record.revision += 1


async def _save_postgres(
    db: Db,
    record: ConversationRecord,
    entries: Sequence[TranscriptEntry],
    *,
    scope: str,
    message_id: str | None,
    reply: dict[str, Any] | None,
) -> None:
    parameters = saved_values(record)
    parameters["lines"] = [_line(entry) for entry in entries]
    if message_id is None:
        row = (await db.execute(PG_SAVE_TURN_WITHOUT_ID, parameters)).one()
        if row.saved != 1:
            raise stale_revision(record)
        return
    parameters.update(scope=scope, message_id=message_id, reply=reply, now=db.now())
    row = (await db.execute(PG_SAVE_TURN, parameters)).one()
    if row.saved == 1 and row.inbound == 1:
        return
    if row.handled or row.saved == 1:
        # Handled before (nothing written), or concurrently by a writer that did not hold the
        # conversation lock (the update stands: the caller must abandon the unit of work).
        raise already_handled(scope, message_id)
    raise stale_revision(record)


async def _save_sqlite(
    db: Db,
    record: ConversationRecord,
    entries: Sequence[TranscriptEntry],
    *,
    scope: str,
    message_id: str | None,
    reply: dict[str, Any] | None,
) -> None:
    parameters = saved_values(record)
    if message_id is None:
        result = await db.execute(UPDATE_CONVERSATION, parameters)
    else:
        parameters.update(scope=scope, message_id=message_id)
        result = await db.execute(UPDATE_CONVERSATION_UNLESS_HANDLED, parameters)
    if result.rowcount != 1:
        if message_id is not None:
            handled = (await db.execute(SELECT_HANDLED, parameters)).scalar_one()
            if handled:
                raise already_handled(scope, message_id)
        raise stale_revision(record)
    if entries:
        await db.execute(INSERT_TRANSCRIPT, transcript_rows(record.id, entries))
    if message_id is not None:
        # Cannot conflict: this connection is the only writer and checked above.
        await db.execute(
            inbound_messages.insert(),
            {
                "scope": scope,
                "message_id": message_id,
                "reply": reply,
                "created_at": db.now(),
                "conversation_id": record.id,
            },
        )
