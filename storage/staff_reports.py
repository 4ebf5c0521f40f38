"""The staff queue, the case on each report, and search, over `reports` and the staff tables.

The queue reads one priority at a time (urgent, urgent review, routine), oldest first, each
from the index `(priority, created_at, reference)`; a page continues from a cursor (keyset
pagination), so page 400 costs what page 1 costs. Search: an FTS5 table on SQLite, a GIN
tsvector index on PostgreSQL (migrations 0006, 0008); the text searched is the report's free text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, and_, delete, func, literal_column, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnClause

from bot.ports import Acknowledgement, OutboxMessage
from storage.db import Db
from storage.erasure import SqlErasure
from storage.models import (
    conversations,
    directory_locations,
    outbox,
    report_case_events,
    report_cases,
    reports,
    transcript_entries,
)
from storage.outbox import SqlOutbox
from storage.repositories import SqlReports

PRIORITIES = ("urgent", "urgent_review", "routine")
#: Kept in step with the latest migration's SEARCH_FIELDS (0008; the indexed expression).
SEARCH_FIELDS = (
    "provider_text",
    "provider_name",
    "service_other",
    "service_part",
    "what_happened",
    "referral_name",
)
SEARCH_TEXT_PG = " || ' ' || ".join(
    f"coalesce(reports.data->>'{name}', '')" for name in SEARCH_FIELDS
)
#: "Earlier reports about the same location": how far back to count.
SAME_LOCATION_WINDOW = timedelta(days=90)

#: The matched location, written exactly as migration 0006 indexes it (with the report's
#: time): an expression index is used only for the same expression, never a bound JSON path.
_LOCATION_ID_SQLITE: ColumnClause[str] = literal_column(
    "json_extract(reports.data, '$.location_id')", String()
)
_LOCATION_ID_PG: ColumnClause[str] = literal_column("(reports.data ->> 'location_id')", String())
_SERVICE_TYPE = reports.c.data["service_type"].as_string()
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class QueueFilters:
    status: str | None = None
    priority: str | None = None
    service_type: str | None = None
    location_id: str | None = None
    local_authority: str | None = None
    created_from: datetime | None = None
    created_before: datetime | None = None
    locale: str | None = None
    channel: str | None = None
    #: An account id, or 0 for "nobody".
    assignee_id: int | None = None
    reference: str | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class QueueCursor:
    rank: int
    created_at: datetime
    reference: str


@dataclass(frozen=True, slots=True)
class QueueItem:
    reference: str
    created_at: datetime
    priority: str
    channel: str
    locale: str
    service_type: str | None
    service_name: str | None
    location_id: str | None
    status: str
    category: str | None
    assignee_id: int | None
    earlier_same_location: int = 0


@dataclass(frozen=True, slots=True)
class QueuePage:
    items: list[QueueItem]
    next_cursor: QueueCursor | None


@dataclass(frozen=True, slots=True)
class ReportCase:
    status: str = "new"
    category: str | None = None
    assignee_id: int | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CaseEvent:
    id: int
    at: datetime
    account_id: int | None
    kind: str
    value: str | None
    note: str | None


@dataclass(frozen=True, slots=True)
class ReportDetail:
    reference: str
    conversation_id: str
    created_at: datetime
    channel: str
    locale: str
    priority: str
    data: dict[str, Any]
    case: ReportCase
    transcript: list[dict[str, Any]] = field(default_factory=list)
    location: dict[str, Any] | None = None


def fts5_query(words: str) -> str | None:
    """Each word as a quoted FTS5 string (prefix match): no operator the person typed runs."""
    tokens = _WORD.findall(words)
    return " ".join(f'"{token}"*' for token in tokens) or None


class StaffReports:
    def __init__(self, db: Db) -> None:
        self.db = db
        self._location_id = _LOCATION_ID_PG if db.is_postgres else _LOCATION_ID_SQLITE

    # ------------------------------------------------------------------ alerts and deliveries

    async def acknowledgement(self, reference: str) -> Acknowledgement | None:
        return await SqlReports(self.db).acknowledgement(reference)

    async def acknowledge(self, reference: str, *, by: str, at: datetime) -> Acknowledgement | None:
        """Take charge of an urgent report (the first acknowledgement stands); the same record
        the alert email's link and `intake reports ack` write, so it stops the escalation."""
        return await SqlReports(self.db).acknowledge(reference, by=by, at=at)

    async def deliveries(self, reference: str) -> list[OutboxMessage]:
        """The report's outgoing messages (acknowledgement, alerts, hand-off), oldest first."""
        messages = await SqlOutbox(self.db).list(key_prefix=f"{reference}:", limit=100)
        return list(reversed(messages))

    # ------------------------------------------------------------------ queue

    def _filtered(self, filters: QueueFilters) -> Select[Any]:
        status = func.coalesce(report_cases.c.status, "new")
        statement = select(
            reports.c.reference,
            reports.c.created_at,
            reports.c.priority,
            reports.c.channel,
            reports.c.locale,
            reports.c.data,
            status.label("status"),
            report_cases.c.category,
            report_cases.c.assignee_id,
        ).select_from(reports.outerjoin(report_cases))
        conditions: list[Any] = []
        if filters.status:
            conditions.append(status == filters.status)
        if filters.priority:
            conditions.append(reports.c.priority == filters.priority)
        if filters.service_type:
            conditions.append(_SERVICE_TYPE == filters.service_type)
        if filters.location_id:
            conditions.append(self._location_id == filters.location_id)
        if filters.local_authority:
            in_authority = select(directory_locations.c.location_id).where(
                directory_locations.c.local_authority == filters.local_authority
            )
            conditions.append(self._location_id.in_(in_authority))
        if filters.created_from:
            conditions.append(reports.c.created_at >= filters.created_from)
        if filters.created_before:
            conditions.append(reports.c.created_at < filters.created_before)
        if filters.locale:
            conditions.append(reports.c.locale == filters.locale)
        if filters.channel:
            conditions.append(reports.c.channel == filters.channel)
        if filters.assignee_id == 0:
            conditions.append(report_cases.c.assignee_id.is_(None))
        elif filters.assignee_id is not None:
            conditions.append(report_cases.c.assignee_id == filters.assignee_id)
        if filters.reference:
            conditions.append(reports.c.reference == filters.reference)
        if filters.text:
            conditions.append(self._matches(filters.text))
        return statement.where(and_(*conditions)) if conditions else statement

    def _matches(self, words: str) -> Any:
        if self.db.is_postgres:
            return text(
                f"to_tsvector('simple', {SEARCH_TEXT_PG}) @@ plainto_tsquery('simple', :words)"
            ).bindparams(words=words)
        query = fts5_query(words)
        if query is None:
            return text("1 = 1")
        # By rowid, which the triggers of migration 0006 give each report's index entry (its
        # deletion trigger relies on it too): reading each match's reference back from the
        # index's own storage cost six times as much for a common word.
        return literal_column("reports.rowid").in_(
            select(text("rowid"))
            .select_from(text("reports_fts"))
            .where(text("reports_fts MATCH :fts").bindparams(fts=query))
        )

    def _priority(self, filters: QueueFilters) -> Any:
        """The priority column, as the queue's rank condition should read it. Filtered to one
        place, SQLite's planner (which has no statistics) walks the priority index and tests
        the place on nearly every report; a unary plus hides that index from this condition
        so the place index is used instead (a few hundred entries, then a small sort)."""
        if filters.location_id and not self.db.is_postgres:
            return literal_column("+reports.priority", String())
        return reports.c.priority

    async def queue(
        self, filters: QueueFilters, *, after: QueueCursor | None = None, limit: int = 25
    ) -> QueuePage:
        rows: list[Any] = []
        for rank in range(after.rank if after else 0, len(PRIORITIES)):
            priority = PRIORITIES[rank]
            if filters.priority and filters.priority != priority:
                continue
            statement = self._filtered(filters).where(self._priority(filters) == priority)
            if after is not None and rank == after.rank:
                statement = statement.where(
                    or_(
                        reports.c.created_at > after.created_at,
                        and_(
                            reports.c.created_at == after.created_at,
                            reports.c.reference > after.reference,
                        ),
                    )
                )
            statement = statement.order_by(reports.c.created_at, reports.c.reference).limit(
                limit + 1 - len(rows)
            )
            rows.extend(await self.db.execute(statement))
            if len(rows) > limit:
                break
        more = len(rows) > limit
        rows = rows[:limit]
        counts = await self._earlier_same_location(rows)
        items = [
            QueueItem(
                reference=row.reference,
                created_at=row.created_at,
                priority=row.priority,
                channel=row.channel,
                locale=row.locale,
                service_type=row.data.get("service_type"),
                service_name=row.data.get("provider_name") or row.data.get("provider_text"),
                location_id=row.data.get("location_id"),
                status=row.status,
                category=row.category,
                assignee_id=row.assignee_id,
                earlier_same_location=counts.get(row.reference, 0),
            )
            for row in rows
        ]
        last = items[-1] if items else None
        cursor = (
            QueueCursor(PRIORITIES.index(last.priority), last.created_at, last.reference)
            if more and last is not None
            else None
        )
        return QueuePage(items, cursor)

    async def count(self, filters: QueueFilters) -> int:
        subquery = self._filtered(filters).subquery()
        result = await self.db.execute(select(func.count()).select_from(subquery))
        return int(result.scalar_one())

    async def _earlier_same_location(self, rows: list[Any]) -> dict[str, int]:
        """For each row: reports about the same location in the 90 days before it.

        One statement of one index range count per row (`ix_reports_location_id`): the
        database counts, so a busy location's thousands of reports never travel to Python."""
        wanted = [row for row in rows if row.data.get("location_id")]
        if not wanted:
            return {}
        counts = [
            select(func.count())
            .select_from(reports)
            .where(
                self._location_id == row.data["location_id"],
                reports.c.created_at >= row.created_at - SAME_LOCATION_WINDOW,
                reports.c.created_at < row.created_at,
            )
            .scalar_subquery()
            .label(f"c{index}")
            for index, row in enumerate(wanted)
        ]
        found = (await self.db.execute(select(*counts))).one()
        return {row.reference: int(found[index]) for index, row in enumerate(wanted)}

    # ------------------------------------------------------------------ one report

    async def detail(self, reference: str) -> ReportDetail | None:
        row = (
            await self.db.execute(select(reports).where(reports.c.reference == reference))
        ).first()
        if row is None:
            return None
        transcript = [
            {"seq": t.seq, "role": t.role, "payload": t.payload, "created_at": t.created_at}
            for t in await self.db.execute(
                select(transcript_entries)
                .where(transcript_entries.c.conversation_id == row.conversation_id)
                .order_by(transcript_entries.c.seq)
            )
        ]
        location = None
        location_id = row.data.get("location_id")
        if location_id:
            found = (
                await self.db.execute(
                    select(directory_locations).where(
                        directory_locations.c.location_id == location_id
                    )
                )
            ).first()
            location = None if found is None else dict(found._mapping)
        return ReportDetail(
            reference=row.reference,
            conversation_id=row.conversation_id,
            created_at=row.created_at,
            channel=row.channel,
            locale=row.locale,
            priority=row.priority,
            data=dict(row.data),
            case=await self.case(reference),
            transcript=transcript,
            location=location,
        )

    async def case(self, reference: str) -> ReportCase:
        row = (
            await self.db.execute(select(report_cases).where(report_cases.c.reference == reference))
        ).first()
        if row is None:
            return ReportCase()
        return ReportCase(row.status, row.category, row.assignee_id, row.updated_at)

    async def save_case(self, reference: str, case: ReportCase) -> None:
        values = {
            "reference": reference,
            "status": case.status,
            "category": case.category,
            "assignee_id": case.assignee_id,
            "updated_at": self.db.now(),
        }
        dialect_insert = postgresql.insert if self.db.is_postgres else sqlite.insert
        statement = dialect_insert(report_cases).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[report_cases.c.reference],
            set_={k: statement.excluded[k] for k in values if k != "reference"},
        )
        await self.db.execute(statement)

    async def add_event(
        self,
        reference: str,
        *,
        account_id: int | None,
        kind: str,
        value: str | None = None,
        note: str | None = None,
    ) -> None:
        await self.db.execute(
            report_case_events.insert().values(
                reference=reference,
                at=self.db.now(),
                account_id=account_id,
                kind=kind,
                value=value,
                note=note,
            )
        )

    async def events(self, reference: str) -> list[CaseEvent]:
        rows = await self.db.execute(
            select(report_case_events)
            .where(report_case_events.c.reference == reference)
            .order_by(report_case_events.c.id)
        )
        return [
            CaseEvent(row.id, row.at, row.account_id, row.kind, row.value, row.note) for row in rows
        ]

    async def delete_report(self, reference: str) -> str | None:
        """Erase a report everywhere: the case, its notes and history go with it (foreign
        keys cascade), the search index by trigger (SQLite) or with the row (PostgreSQL),
        and the conversation with its transcript. Returns the conversation id, or None."""
        row = (
            await self.db.execute(
                select(reports.c.conversation_id).where(reports.c.reference == reference)
            )
        ).first()
        if row is None:
            return None
        await self.db.execute(
            delete(report_case_events).where(report_case_events.c.reference == reference)
        )
        await self.db.execute(delete(report_cases).where(report_cases.c.reference == reference))
        await self.db.execute(delete(reports).where(reports.c.reference == reference))
        await self.db.execute(
            delete(transcript_entries).where(transcript_entries.c.conversation_id == row[0])
        )
        return str(row[0])


@dataclass(frozen=True, slots=True)
class PurgeCandidate:
    reference: str
    created_at: datetime
    category: str | None
    status: str


async def erase_report(db: Db, reference: str) -> bool:
    """A person's erasure request: the report, its case, notes and history, its search entry,
    the conversation (its state holds the answers) with its transcript, and the outbox rows
    that carried it. The audit log keeps only that a reference was erased."""
    row = (
        await db.execute(select(reports.c.conversation_id).where(reports.c.reference == reference))
    ).first()
    if row is None:
        return False
    conversation_id = str(row[0])
    found = (
        await db.execute(
            select(conversations.c.channel, conversations.c.channel_key).where(
                conversations.c.id == conversation_id
            )
        )
    ).first()
    await StaffReports(db).delete_report(reference)
    await db.execute(delete(outbox).where(outbox.c.ordering_key == reference))
    # The one place that knows every copy of a conversation's words (transcript, replies kept
    # for idempotency, chat messages in the outbox), as cancel uses it.
    await SqlErasure(db).conversation(conversation_id, final_reply=None)
    if found is not None and found.channel_key:
        # Chat messages written before keys existed (migration 0004) are found by their chat;
        # pending ones are left to be delivered (they may belong to a newer conversation).
        await db.execute(
            delete(outbox).where(
                outbox.c.ordering_key == found.channel_key, outbox.c.status != "pending"
            )
        )
    await db.execute(delete(conversations).where(conversations.c.id == conversation_id))
    return True


async def forget_erased_search_terms(db: Db) -> None:
    """After reports are erased: SQLite's FTS5 keeps a deleted row's words in its index pages
    until they are merged, so merge them now (an erased account must not be readable in the
    file). PostgreSQL's index is on the row itself and goes with it."""
    if not db.is_postgres:
        await db.execute(text("INSERT INTO reports_fts (reports_fts) VALUES ('optimize')"))


async def purge_candidates(
    db: Db, retention_days: dict[str, int], *, now: datetime, limit: int = 1000
) -> list[PurgeCandidate]:
    """Closed cases older than their category's retention (uncategorised: "default").
    A case still open is never purged, whatever its age."""
    oldest_cut = now - timedelta(days=min(retention_days.values()))
    statement = (
        select(
            reports.c.reference,
            reports.c.created_at,
            report_cases.c.category,
            report_cases.c.status,
        )
        .select_from(reports.join(report_cases))
        .where(report_cases.c.status == "closed", reports.c.created_at < oldest_cut)
        .order_by(reports.c.created_at)
    )
    found: list[PurgeCandidate] = []
    for row in await db.execute(statement):
        days = retention_days.get(row.category or "default", retention_days["default"])
        if row.created_at < now - timedelta(days=days):
            found.append(PurgeCandidate(row.reference, row.created_at, row.category, row.status))
            if len(found) >= limit:
                break
    return found
