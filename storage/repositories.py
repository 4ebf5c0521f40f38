"""Conversations, the inbound log, transcripts and reports: the per-turn repositories."""

from __future__ import annotations

import builtins
import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Text, and_, any_, bindparam, case, delete, exists, func, null, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY

from bot.engine.types import ConversationState
from bot.ports import (
    Acknowledgement,
    Channel,
    ConcurrencyError,
    ConversationRecord,
    DuplicateError,
    OvertakenError,
    StoredReport,
    TranscriptEntry,
)
from storage.coltypes import UTCDateTime, as_utc, from_sqlite_time, json_text, sqlite_time
from storage.db import Db
from storage.errors import storage_errors
from storage.models import (
    conversations,
    inbound_messages,
    reports,
    service_secrets,
    transcript_entries,
)

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
        transcript_seq=getattr(row, "next_seq", None) or row.transcript_seq,
    )


def saved_values(record: ConversationRecord) -> dict[str, Any]:
    """The parameters of `UPDATE_CONVERSATION`: the row to match (`b_id`, `b_revision`), the
    columns to set, by name, and the new status and time again for the sweeper's columns
    (`b_status`, `b_updated_at`)."""
    return {
        "b_id": record.id,
        "b_revision": record.revision,
        "b_status": record.state.status,
        "b_updated_at": record.updated_at,
        "state": record.state.to_json(),
        "status": record.state.status,
        "reference": record.reference,
        "channel_key": record.channel_key,
        "token_hash": record.token_hash,
        "updated_at": record.updated_at,
        "transcript_seq": record.transcript_seq,
    }


# Statements of every turn, built once: SQLAlchemy then only looks up their compiled form.

_AFTER_LAST_LINE = (
    select(func.coalesce(func.max(transcript_entries.c.seq), 0) + 1)
    .where(transcript_entries.c.conversation_id == conversations.c.id)
    .scalar_subquery()
)
#: The next transcript number: the row's counter, unless lines were written without advancing
#: it (a worker of the release before migration 0003, during a rolling upgrade). An index
#: look-up inside the turn's read, so no extra round trip.
_NEXT_SEQ = case(
    (_AFTER_LAST_LINE > conversations.c.transcript_seq, _AFTER_LAST_LINE),
    else_=conversations.c.transcript_seq,
).label("next_seq")
#: A row lock until the transaction ends (PostgreSQL); SQLite ignores FOR UPDATE because
#: BEGIN IMMEDIATE already made this the only writer.
GET_FOR_UPDATE = (
    select(conversations, _NEXT_SEQ)
    .where(conversations.c.id == bindparam("id"))
    .with_for_update(of=conversations)
)
GET_INBOUND_REPLY = select(inbound_messages.c.reply).where(
    inbound_messages.c.scope == bindparam("scope"),
    inbound_messages.c.message_id == bindparam("message_id"),
)


def sweep_marks(record: ConversationRecord) -> tuple[datetime | None, datetime | None]:
    """A new row's `untouched_at` and `finished_at` (see `storage.models.ConversationRow`)."""
    status = record.state.status
    untouched = status == "active" and record.updated_at == record.created_at
    return (
        record.created_at if untouched else None,
        None if status == "active" else record.updated_at,
    )


_NEW_STATUS: Any = bindparam("b_status")
_NEW_TIME = bindparam("b_updated_at", type_=UTCDateTime())
#: `untouched_at` as every write of a conversation sets it: `created_at` while active and
#: never changed since, NULL from the first turn on (so NULL again at every later turn: the
#: value does not change, and PostgreSQL's update stays HOT). The turn's own statements
#: (`storage.turns`) say the same in their SQL.
_UNTOUCHED_AT = case(
    (
        and_(_NEW_STATUS == "active", _NEW_TIME == conversations.c.created_at),
        conversations.c.created_at,
    ),
    else_=null(),
)
#: `finished_at` as `update` sets it (a write that adds no transcript line and no reply):
#: NULL while active; the new time if the write ends the conversation or changes its time;
#: otherwise as it was, so the eraser's own save of the emptied state, which changes neither
#: status nor time, leaves its mark cleared (`list_finished_with_data`). A turn adds lines or
#: a reply, so the turn's statements set it to the new time whenever the conversation is not
#: active.
_FINISHED_AT = case(
    (_NEW_STATUS == "active", null()),
    (
        and_(
            conversations.c.status == _NEW_STATUS,
            conversations.c.updated_at == _NEW_TIME,
        ),
        conversations.c.finished_at,
    ),
    else_=_NEW_TIME,
)
#: Save state if nobody saved since `revision` was loaded (see ConversationRepository.update).
#: The columns to set come from the parameters (`saved_values`).
UPDATE_CONVERSATION = (
    update(conversations)
    .where(
        conversations.c.id == bindparam("b_id"),
        conversations.c.revision == bindparam("b_revision"),
    )
    .values(
        revision=conversations.c.revision + 1,
        untouched_at=_UNTOUCHED_AT,
        finished_at=_FINISHED_AT,
    )
)
INSERT_TRANSCRIPT = transcript_entries.insert()


def transcript_rows(
    conversation_id: str, entries: Sequence[TranscriptEntry]
) -> builtins.list[dict[str, Any]]:
    return [
        {
            "conversation_id": conversation_id,
            "seq": entry.seq,
            "role": entry.role,
            "payload": entry.payload,
            "created_at": entry.created_at,
        }
        for entry in entries
    ]


def stale_revision(record: ConversationRecord) -> ConcurrencyError:
    return ConcurrencyError(
        f"conversation {record.id!r} changed since revision {record.revision} was loaded"
    )


def overtaken(record: ConversationRecord) -> OvertakenError:
    return OvertakenError(
        f"conversation {record.id!r} changed since revision {record.revision} was read unlocked"
    )


def already_handled(scope: str, message_id: str) -> DuplicateError:
    return DuplicateError(f"inbound message {scope}/{message_id} was already handled")


class SqlConversations:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, record: ConversationRecord) -> None:
        untouched_at, finished_at = sweep_marks(record)
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
            transcript_seq=record.transcript_seq,
            untouched_at=untouched_at,
            finished_at=finished_at,
        )
        result = await self._db.execute(statement)
        if result.rowcount == 0:
            raise DuplicateError(f"conversation {record.id!r} exists")

    async def get(
        self, conversation_id: str, *, for_update: bool = False
    ) -> ConversationRecord | None:
        if for_update:
            statement = GET_FOR_UPDATE
        else:
            statement = select(conversations).where(conversations.c.id == bindparam("id"))
        row = (await self._db.execute(statement, {"id": conversation_id})).first()
        return None if row is None else _conversation(row)

    async def get_for_turn(
        self, conversation_id: str, *, scope: str, message_id: str | None
    ) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
        # The turn's hot path: on the driver's connection (storage.turns).
        from storage.turns import pg_get_for_turn, sqlite_get_for_turn

        read = pg_get_for_turn if self._db.is_postgres else sqlite_get_for_turn
        return await read(self._db, conversation_id, scope=scope, message_id=message_id)

    async def read_for_turn(
        self, conversation_id: str, *, scope: str, message_id: str | None
    ) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
        # What this worker's last write of the conversation left, if it keeps that
        # (storage.turn_cache): no read at all; the write's revision check stands in for it.
        # PostgreSQL with unlocked turns: without the lock, outside a transaction
        # (storage.turns.pg_read_for_turn). SQLite: the locked read, which costs nothing more
        # there (the single writer is taken for the write anyway, and the read's BEGIN
        # IMMEDIATE goes in the same hand-off).
        db = self._db
        kept = db.start_from_kept(lambda cache: cache.take(conversation_id))
        if kept is not None:
            return kept, None
        if db.is_postgres and db.unlocked_turns:
            from storage.turns import pg_read_for_turn

            return await pg_read_for_turn(db, conversation_id, scope=scope, message_id=message_id)
        return await self.get_for_turn(conversation_id, scope=scope, message_id=message_id)

    async def find_active_for_turn(
        self, channel: Channel, channel_key: str, *, scope: str, message_id: str
    ) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
        # A Telegram turn's hot path: on the driver's connection (storage.turns).
        from storage.turns import pg_find_active_for_turn, sqlite_find_active_for_turn

        read = pg_find_active_for_turn if self._db.is_postgres else sqlite_find_active_for_turn
        return await read(self._db, channel, channel_key, scope=scope, message_id=message_id)

    async def read_active_for_turn(
        self, channel: Channel, channel_key: str, *, scope: str, message_id: str
    ) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
        # As `read_for_turn`: what this worker's last write of the chat's conversation left,
        # if it keeps that and the conversation was open (storage.turn_cache); else PostgreSQL
        # with unlocked turns reads without the lock, outside a transaction
        # (storage.turns.pg_read_active_for_turn); SQLite takes the single writer with the
        # read, as the locked read does.
        kept = self._db.start_from_kept(lambda cache: cache.take_active(channel, channel_key))
        if kept is not None:
            return kept, None
        if self._db.is_postgres and self._db.unlocked_turns:
            from storage.turns import pg_read_active_for_turn

            return await pg_read_active_for_turn(
                self._db, channel, channel_key, scope=scope, message_id=message_id
            )
        return await self.find_active_for_turn(
            channel, channel_key, scope=scope, message_id=message_id
        )

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
        self._db.forget_turn(record.id)  # an erasure of what was typed, an idle one ended...
        result = await self._db.execute(UPDATE_CONVERSATION, saved_values(record))
        if result.rowcount != 1:
            raise stale_revision(record)
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

    async def delete_untouched(self, channel: str, before: datetime, *, limit: int) -> int:
        """Delete conversations of `channel` opened before `before` that never had a turn
        (`updated_at` is still `created_at`); their transcript goes with them (ON DELETE
        CASCADE). Read by `ix_conversations_untouched`: only such conversations have an
        `untouched_at`, so the look-up reads the due ones and nothing else. A turn that takes
        one meanwhile changes `updated_at`, and PostgreSQL re-checks that after waiting for
        the row, so a conversation in use is never deleted."""
        untouched = (
            select(conversations.c.id)
            .where(
                conversations.c.channel == channel,
                conversations.c.untouched_at < before,
                # What the mark stands for, checked again on the few rows it finds.
                conversations.c.status == "active",
                conversations.c.updated_at == conversations.c.created_at,
            )
            .limit(limit)
        )
        if self._db.is_postgres:
            untouched = untouched.with_for_update(skip_locked=True)
        statement = delete(conversations).where(
            among(conversations.c.id, untouched, postgres=self._db.is_postgres),
            conversations.c.updated_at == conversations.c.created_at,
        )
        result = await self._db.execute(statement)
        return int(result.rowcount)

    async def list_finished_with_data(
        self, before: datetime, *, limit: int
    ) -> builtins.list[ConversationRecord]:
        """Ended or submitted before `before`, with transcript lines or remembered replies
        left to erase, oldest first; locked on PostgreSQL (skipping rows another worker is
        erasing). The caller erases them in this unit of work.

        Read by `ix_conversations_finished`: only the conversations the eraser has not been
        through since they last changed, by that time (`finished_at` is `updated_at`), so the
        look-up reads the due ones and nothing else. Each row read is taken off that index
        here (its mark cleared): one with data because the caller erases it now, one without
        because there is nothing to erase. A later turn of the conversation marks it again."""
        found: builtins.list[ConversationRecord] = []
        while len(found) < limit:
            batch = limit - len(found)
            statement = (
                select(
                    conversations,
                    _HAS_LINES.label("has_lines"),
                    _HAS_REPLIES.label("has_replies"),
                )
                .where(
                    conversations.c.finished_at < before,
                    conversations.c.status != "active",
                    conversations.c.updated_at < before,
                )
                .order_by(conversations.c.finished_at, conversations.c.id)
                .limit(batch)
            )
            if self._db.is_postgres:
                statement = statement.with_for_update(of=conversations, skip_locked=True)
            rows = (await self._db.execute(statement)).all()
            if rows:
                await self._db.execute(
                    update(conversations)
                    .where(conversations.c.id.in_([row.id for row in rows]))
                    .values(finished_at=None)
                )
            found.extend(_conversation(row) for row in rows if row.has_lines or row.has_replies)
            if len(rows) < batch:
                break
        return found

    async def mark_unswept(self) -> int:
        result = await self._db.execute(MARK_UNSWEPT)
        return int(result.rowcount)


_HAS_LINES = exists().where(transcript_entries.c.conversation_id == conversations.c.id)
_HAS_REPLIES = exists().where(inbound_messages.c.scope == conversations.c.id)
#: Migration 0010's backfill of `finished_at`, again (`mark_unswept`).
MARK_UNSWEPT = (
    update(conversations)
    .where(
        conversations.c.status != "active",
        conversations.c.finished_at.is_(None),
        _HAS_LINES | _HAS_REPLIES,
    )
    .values(finished_at=conversations.c.updated_at)
)


def among(column: Any, ids: Any, *, postgres: bool) -> Any:
    """`column` is one of the ids `ids` (a SELECT of one column) selects. On PostgreSQL as
    `= ANY (ARRAY(...))`: the ids are collected first and each row is found by its key;
    `IN (...)` lets the planner join, and where it expected many ids it read the whole table
    (a sequential scan of every chat message id for the handful due)."""
    if not postgres:
        return column.in_(ids.scalar_subquery())
    return column == any_(func.array(ids.scalar_subquery(), type_=ARRAY(column.type)))


def _reply(reply: Any) -> dict[str, Any] | None:
    return None if reply is None else dict(reply)


class SqlInboundLog:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def get(self, scope: str, message_id: str) -> dict[str, Any] | None:
        parameters = {"scope": scope, "message_id": message_id}
        return _reply((await self._db.execute(GET_INBOUND_REPLY, parameters)).scalar_one_or_none())

    async def erase(self, scope: str) -> None:
        await self._db.execute(delete(inbound_messages).where(inbound_messages.c.scope == scope))

    async def put(
        self,
        scope: str,
        message_id: str,
        reply: dict[str, Any],
        *,
        conversation_id: str | None = None,
    ) -> None:
        statement = self._db.insert_or_ignore(inbound_messages).values(
            scope=scope,
            message_id=message_id,
            reply=reply,
            created_at=self._db.now(),
            conversation_id=conversation_id,
        )
        result = await self._db.execute(statement)
        if result.rowcount == 0:
            raise already_handled(scope, message_id)


class SqlTranscripts:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def append(self, conversation_id: str, entries: Sequence[TranscriptEntry]) -> None:
        if entries:
            await self._db.execute(INSERT_TRANSCRIPT, transcript_rows(conversation_id, entries))

    async def list(
        self, conversation_id: str, *, max_chars: int | None = None
    ) -> builtins.list[TranscriptEntry]:
        of_conversation = transcript_entries.c.conversation_id == conversation_id
        statement = select(transcript_entries).where(of_conversation)
        if max_chars is not None:
            first = await self._first_seq_within(conversation_id, max_chars)
            if first is None:
                return []
            statement = statement.where(transcript_entries.c.seq >= first)
        statement = statement.order_by(transcript_entries.c.seq)
        return [
            TranscriptEntry(
                seq=row.seq, role=row.role, payload=row.payload, created_at=row.created_at
            )
            for row in await self._db.execute(statement)
        ]

    async def _first_seq_within(self, conversation_id: str, max_chars: int) -> int | None:
        """The oldest seq from which the newest lines fit in `max_chars`; only sizes are read."""
        size = func.length(sql_cast(transcript_entries.c.payload, Text))
        sizes = select(transcript_entries.c.seq, size.label("size")).where(
            transcript_entries.c.conversation_id == conversation_id
        )
        first: int | None = None
        total = 0
        for row in await self._db.execute(sizes.order_by(transcript_entries.c.seq.desc())):
            total += int(row.size or 0)
            if total > max_chars:
                break
            first = int(row.seq)
        return first

    async def erase(self, conversation_id: str, *, before_seq: int | None = None) -> None:
        statement = delete(transcript_entries).where(
            transcript_entries.c.conversation_id == conversation_id
        )
        if before_seq is not None:
            statement = statement.where(transcript_entries.c.seq < before_seq)
        await self._db.execute(statement)


def _report_from(row: Any, data: Any, created_at: datetime) -> StoredReport:
    """A report from a row read on the driver, its JSON and time already read back."""
    return StoredReport(
        reference=row["reference"],
        conversation_id=row["conversation_id"],
        created_at=created_at,
        channel=row["channel"],
        locale=row["locale"],
        priority=row["priority"],
        data=data,
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


#: A report's columns as `StoredReport` has them. Adding one and reading it back by its
#: reference run on the driver's connection, as the turn's own statements do
#: (`storage.turns`): the submission's turn adds it, and the outbox's fan-out reads it right
#: after; through SQLAlchemy each was a greenlet hand-off and its per-statement work: the two
#: were about 4% of the serving process's CPU in the web bench, at one submission in nineteen
#: turns (BENCHMARKS.md).
_REPORT_COLUMNS = "reference, conversation_id, created_at, channel, locale, priority, data"
#: ON CONFLICT keeps the transaction usable, so the caller can retry with a new reference.
PG_ADD_REPORT = f"""INSERT INTO reports ({_REPORT_COLUMNS})
    VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) ON CONFLICT DO NOTHING"""  # noqa: S608 - constant text
SQLITE_ADD_REPORT = f"""INSERT INTO reports ({_REPORT_COLUMNS})
    VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"""  # noqa: S608 - constant text
PG_GET_REPORT = f"SELECT {_REPORT_COLUMNS} FROM reports WHERE reference = $1"  # noqa: S608 - constant text
SQLITE_GET_REPORT = f"SELECT {_REPORT_COLUMNS} FROM reports WHERE reference = ?"  # noqa: S608 - constant text


class SqlReports:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, report: StoredReport) -> None:
        """One INSERT on the driver's connection, in the unit of work's transaction; values
        stored as SQLAlchemy's types store them (JSON text, times aware on PostgreSQL and
        naive UTC text on SQLite: `storage.coltypes`)."""
        data = json_text(report.data)
        if self._db.is_postgres:
            driver = await self._db.driver()
            with storage_errors():
                status = await driver.execute(
                    PG_ADD_REPORT,
                    report.reference,
                    report.conversation_id,
                    as_utc(report.created_at),
                    report.channel,
                    report.locale,
                    report.priority,
                    data,
                )
            added = status != "INSERT 0 0"
        else:
            parameters = (
                report.reference,
                report.conversation_id,
                sqlite_time(report.created_at),
                report.channel,
                report.locale,
                report.priority,
                data,
            )

            def insert(connection: sqlite3.Connection) -> bool:
                return connection.execute(SQLITE_ADD_REPORT, parameters).rowcount > 0

            added = await self._db.run_sqlite(insert)
        if not added:
            raise DuplicateError(
                f"report {report.reference!r} (or one for conversation "
                f"{report.conversation_id!r}) exists"
            )

    async def get(self, reference: str) -> StoredReport | None:
        """One SELECT on the driver's connection: on PostgreSQL outside a transaction when
        the unit of work has begun none (`Db.run_read`)."""
        if self._db.is_postgres:

            async def read(driver: Any) -> Any:
                return await driver.fetchrow(PG_GET_REPORT, reference)

            row = await self._db.run_read(read)
            # JSON decoded by the codec SQLAlchemy's dialect sets on each connection.
            return None if row is None else _report_from(row, row["data"], row["created_at"])

        def select_row(connection: sqlite3.Connection) -> Any:
            return connection.execute(SQLITE_GET_REPORT, (reference,)).fetchone()

        found = await self._db.run_sqlite(select_row)
        if found is None:
            return None
        row = dict(zip(_REPORT_COLUMNS.split(", "), found, strict=True))
        return _report_from(row, json.loads(row["data"]), from_sqlite_time(row["created_at"]))

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

    async def acknowledge(self, reference: str, *, by: str, at: datetime) -> Acknowledgement | None:
        await self._db.execute(
            update(reports)
            .where(reports.c.reference == reference, reports.c.acknowledged_at.is_(None))
            .values(acknowledged_at=at, acknowledged_by=by)
        )
        return await self.acknowledgement(reference)

    async def acknowledgement(self, reference: str) -> Acknowledgement | None:
        statement = select(reports.c.acknowledged_at, reports.c.acknowledged_by).where(
            reports.c.reference == reference
        )
        row = (await self._db.execute(statement)).first()
        if row is None or row.acknowledged_at is None:
            return None
        return Acknowledgement(at=row.acknowledged_at, by=row.acknowledged_by or "")

    async def count_unacknowledged_urgent(self) -> int:
        statement = (
            select(func.count())
            .select_from(reports)
            .where(
                reports.c.priority.in_(("urgent", "urgent_review")),
                reports.c.acknowledged_at.is_(None),
            )
        )
        return int((await self._db.execute(statement)).scalar_one())


class SqlSecrets:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def get_or_create(self, name: str, make: Callable[[], str]) -> str:
        await self._db.execute(
            self._db.insert_or_ignore(service_secrets).values(name=name, value=make())
        )
        statement = select(service_secrets.c.value).where(service_secrets.c.name == name)
        return str((await self._db.execute(statement)).scalar_one())
