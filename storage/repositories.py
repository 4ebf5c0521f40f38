"""Conversations, the inbound log, transcripts and reports: the per-turn repositories."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import case, delete, func, select, update

from bot.engine.types import ConversationState
from bot.ports import (
    Channel,
    ConcurrencyError,
    ConversationRecord,
    DuplicateError,
    StoredReport,
    TranscriptEntry,
)
from storage.db import Db
from storage.models import conversations, inbound_messages, reports, transcript_entries

#: The intake team's queue order (see ReportRepository.list).
PRIORITY_ORDER = ("urgent", "urgent_review", "routine")


def _conversation(row: Any) -> ConversationRecord:
    return ConversationRecord(
        id=row.id,
        channel=cast(Channel, row.channel),
        state=ConversationState.from_json(row.state),
        created_at=row.created_at,
        updated_at=row.updated_at,
        revision=row.revision,
        token_hash=row.token_hash,
        channel_key=row.channel_key,
        reference=row.reference,
    )


class SqlConversations:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, record: ConversationRecord) -> None:
        statement = self._db.insert_or_ignore(conversations).values(
            id=record.id,
            channel=record.channel,
            channel_key=record.channel_key,
            token_hash=record.token_hash,
            state=record.state.to_json(),
            status=record.state.status,
            revision=record.revision,
            reference=record.reference,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )
        result = await self._db.execute(statement)
        if result.rowcount == 0:
            raise DuplicateError(f"conversation {record.id!r} exists")

    async def get(
        self, conversation_id: str, *, for_update: bool = False
    ) -> ConversationRecord | None:
        statement = select(conversations).where(conversations.c.id == conversation_id)
        if for_update:
            # A row lock until the transaction ends (PostgreSQL); SQLite ignores FOR UPDATE
            # because BEGIN IMMEDIATE already made this the only writer.
            statement = statement.with_for_update()
        row = (await self._db.execute(statement)).first()
        return None if row is None else _conversation(row)

    async def find_active(
        self, channel: Channel, channel_key: str, *, for_update: bool = False
    ) -> ConversationRecord | None:
        statement = (
            select(conversations)
            .where(
                conversations.c.channel == channel,
                conversations.c.channel_key == channel_key,
                conversations.c.status == "active",
            )
            .order_by(conversations.c.created_at.desc(), conversations.c.id.desc())
            .limit(1)
        )
        if for_update:
            statement = statement.with_for_update()
        row = (await self._db.execute(statement)).first()
        return None if row is None else _conversation(row)

    async def update(self, record: ConversationRecord) -> None:
        statement = (
            update(conversations)
            .where(
                conversations.c.id == record.id,
                conversations.c.revision == record.revision,
            )
            .values(
                state=record.state.to_json(),
                status=record.state.status,
                revision=record.revision + 1,
                reference=record.reference,
                channel_key=record.channel_key,
                token_hash=record.token_hash,
                updated_at=record.updated_at,
            )
        )
        result = await self._db.execute(statement)
        if result.rowcount != 1:
            raise ConcurrencyError(
                f"conversation {record.id!r} changed since revision {record.revision} was loaded"
            )
        record.revision += 1

    async def list_idle(self, before: datetime, *, limit: int) -> builtins.list[ConversationRecord]:
        statement = (
            select(conversations)
            .where(conversations.c.status == "active", conversations.c.updated_at < before)
            .order_by(conversations.c.updated_at, conversations.c.id)
            .limit(limit)
        )
        if self._db.is_postgres:
            statement = statement.with_for_update(skip_locked=True)
        rows = (await self._db.execute(statement)).all()
        return [_conversation(row) for row in rows]


class SqlInboundLog:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def get(self, scope: str, message_id: str) -> dict[str, Any] | None:
        statement = select(inbound_messages.c.reply).where(
            inbound_messages.c.scope == scope, inbound_messages.c.message_id == message_id
        )
        reply = (await self._db.execute(statement)).scalar_one_or_none()
        return None if reply is None else dict(reply)

    async def put(self, scope: str, message_id: str, reply: dict[str, Any]) -> None:
        statement = self._db.insert_or_ignore(inbound_messages).values(
            scope=scope, message_id=message_id, reply=reply, created_at=self._db.now()
        )
        result = await self._db.execute(statement)
        if result.rowcount == 0:
            raise DuplicateError(f"inbound message {scope}/{message_id} was already handled")


class SqlTranscripts:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def append(self, conversation_id: str, entries: Sequence[TranscriptEntry]) -> None:
        if not entries:
            return
        rows = [
            {
                "conversation_id": conversation_id,
                "seq": entry.seq,
                "role": entry.role,
                "payload": entry.payload,
                "created_at": entry.created_at,
            }
            for entry in entries
        ]
        await self._db.execute(transcript_entries.insert(), rows)

    async def list(self, conversation_id: str) -> builtins.list[TranscriptEntry]:
        statement = (
            select(transcript_entries)
            .where(transcript_entries.c.conversation_id == conversation_id)
            .order_by(transcript_entries.c.seq)
        )
        return [
            TranscriptEntry(
                seq=row.seq, role=row.role, payload=row.payload, created_at=row.created_at
            )
            for row in await self._db.execute(statement)
        ]

    async def next_seq(self, conversation_id: str) -> int:
        """One more than the highest stored seq; 1 for an empty transcript."""
        statement = select(func.max(transcript_entries.c.seq)).where(
            transcript_entries.c.conversation_id == conversation_id
        )
        highest = (await self._db.execute(statement)).scalar_one_or_none()
        return 1 if highest is None else int(highest) + 1

    async def erase(self, conversation_id: str) -> None:
        await self._db.execute(
            delete(transcript_entries).where(
                transcript_entries.c.conversation_id == conversation_id
            )
        )


def _report(row: Any) -> StoredReport:
    return StoredReport(
        reference=row.reference,
        conversation_id=row.conversation_id,
        created_at=row.created_at,
        channel=row.channel,
        locale=row.locale,
        priority=row.priority,
        data=row.data,
    )


class SqlReports:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, report: StoredReport) -> None:
        statement = self._db.insert_or_ignore(reports).values(
            reference=report.reference,
            conversation_id=report.conversation_id,
            created_at=report.created_at,
            channel=report.channel,
            locale=report.locale,
            priority=report.priority,
            data=dict(report.data),
        )
        # ON CONFLICT keeps the transaction usable, so the caller can retry with a new reference.
        result = await self._db.execute(statement)
        if result.rowcount == 0:
            raise DuplicateError(
                f"report {report.reference!r} (or one for conversation "
                f"{report.conversation_id!r}) exists"
            )

    async def get(self, reference: str) -> StoredReport | None:
        statement = select(reports).where(reports.c.reference == reference)
        row = (await self._db.execute(statement)).first()
        return None if row is None else _report(row)

    async def list(self, *, limit: int = 100, offset: int = 0) -> builtins.list[StoredReport]:
        rank = case(
            {priority: index for index, priority in enumerate(PRIORITY_ORDER)},
            value=reports.c.priority,
            else_=len(PRIORITY_ORDER),
        )
        statement = (
            select(reports)
            .order_by(rank, reports.c.created_at, reports.c.reference)
            .limit(limit)
            .offset(offset)
        )
        return [_report(row) for row in await self._db.execute(statement)]

    async def count(self) -> int:
        result = await self._db.execute(select(func.count()).select_from(reports))
        return int(result.scalar_one())
