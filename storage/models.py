"""The tables, as SQLAlchemy 2 declarative models.

The repositories use Core statements on these tables (no ORM identity map: one turn is a few
small statements, and the domain objects are the dataclasses of `bot.ports`). The initial
Alembic revision mirrors this file by hand; `tests/storage/test_storage_migrations.py` proves
that they agree.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.coltypes import JSONType, UTCDateTime

#: Explicit constraint names, so the hand-written migration and the models name things alike.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ConversationRow(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_channel_key", "channel", "channel_key", "status"),
        # At most one active conversation per channel address (a Telegram chat): two first
        # messages of one chat handled by two workers at once cannot open two conversations;
        # the loser's INSERT conflicts and its turn is retried (see migration 0002).
        Index(
            "uq_conversations_active_channel_key",
            "channel",
            "channel_key",
            unique=True,
            postgresql_where=text("status = 'active' AND channel_key IS NOT NULL"),
            sqlite_where=text("status = 'active' AND channel_key IS NOT NULL"),
        ),
        # The sweeper's two look-ups (migration 0010): only the rows due for it, by time. Both
        # columns are NULL for a conversation in the middle of its turns, and a turn writes
        # NULL again, so the turn's update stays HOT on PostgreSQL (no indexed value changes).
        Index(
            "ix_conversations_untouched",
            "channel",
            "untouched_at",
            postgresql_where=text("untouched_at IS NOT NULL"),
            sqlite_where=text("untouched_at IS NOT NULL"),
        ),
        Index(
            "ix_conversations_finished",
            "finished_at",
            "id",
            postgresql_where=text("finished_at IS NOT NULL"),
            sqlite_where=text("finished_at IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    channel_key: Mapped[str | None] = mapped_column(String(128))
    token_hash: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[dict[str, Any]] = mapped_column(JSONType)
    #: Copied from `state["status"]` so that `find_active` can use the index.
    status: Mapped[str] = mapped_column(String(16))
    revision: Mapped[int] = mapped_column(Integer)
    reference: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: The seq of the conversation's next transcript line (migration 0003): the turn reads it
    #: with the row it locks instead of asking for max(seq).
    transcript_seq: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    #: `created_at` while the conversation is active and has had no turn (`updated_at` is
    #: still `created_at`), else NULL (migration 0010): the first turn clears it, later turns
    #: write NULL again. The untouched sweep reads `ix_conversations_untouched` by it.
    untouched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: `updated_at` of a conversation that is no longer active and that the eraser has not
    #: been through since it last changed, else NULL (migration 0010): what the eraser of
    #: finished conversations reads, by `ix_conversations_finished`. NULL all through the
    #: conversation's turns; set by the write that ends it, cleared by the eraser.
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TranscriptEntryRow(Base):
    __tablename__ = "transcript_entries"
    __table_args__ = (UniqueConstraint("conversation_id", "seq"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("conversations.id", ondelete="CASCADE")
    )
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(8))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InboundMessageRow(Base):
    """The reply given to each inbound message id: a redelivered message gets the same reply."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        # Erasure finds a chat's replies by conversation; a web conversation's are under its
        # own id as their scope (the primary key's prefix), so they stay out of this index and
        # a web turn writes one index entry fewer (migration 0012, storage/erasure.py).
        Index(
            "ix_inbound_messages_conversation_id",
            "conversation_id",
            postgresql_where=text("conversation_id <> scope"),
            sqlite_where=text("conversation_id <> scope"),
        ),
    )

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    reply: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    #: Whose reply this is (migration 0004), so erasing the conversation finds it. NULL only
    #: for rows written by a worker of the release before 0004 (see storage/erasure.py).
    conversation_id: Mapped[str | None] = mapped_column(String(64))


class ReportRow(Base):
    __tablename__ = "reports"

    reference: Mapped[str] = mapped_column(String(32), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    channel: Mapped[str] = mapped_column(String(16))
    locale: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    #: Who took charge of an urgent report, and when (migration 0005).
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(320))


class OutboxRow(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        # The claim query: pending messages of a topic, per ordering key, oldest first.
        Index("ix_outbox_claim", "topic", "status", "ordering_key", "id"),
        # "{reference}:{kind}" for messages derived from a report: written at most once. Only
        # rows with a key (migration 0011): a Telegram reply has none, and one is written at
        # every turn of a chat.
        Index(
            "uq_outbox_idempotency_key",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
            sqlite_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(64))
    ordering_key: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    #: The conversation whose messages the row carries (migration 0004), so erasing the
    #: conversation erases them; NULL for events that carry none of its words.
    conversation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(160))


class ChatMessageRow(Base):
    """The ids of a chat's messages, ours and the person's, never their text (migration 0007):
    the quick exit deletes them in Telegram. Kept 48 hours at most (Telegram lets a bot
    delete a message only that long), and erased with the conversation."""

    __tablename__ = "chat_messages"
    __table_args__ = (Index("ix_chat_messages_chat", "channel", "channel_key", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))
    channel_key: Mapped[str] = mapped_column(String(128))
    message_id: Mapped[int] = mapped_column(BigInteger)
    conversation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AlertSubscriptionRow(Base):
    """Inspection-report alerts, apart from any report: an address and a location id (and the
    language, the link token, the opt-in state and the inspection date last told)."""

    __tablename__ = "alert_subscriptions"
    __table_args__ = (UniqueConstraint("email", "location_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320))
    location_id: Mapped[str] = mapped_column(String(32), index=True)
    locale: Mapped[str] = mapped_column(String(16))
    token: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_checked_seen: Mapped[date | None] = mapped_column(Date)


class ChatSurveyRow(Base):
    """Answers to the survey about the chat, apart from the reports and anonymous: the day,
    the channel, the language and the answers; no conversation, reference or person."""

    __tablename__ = "chat_surveys"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    day: Mapped[date] = mapped_column(Date, index=True)
    channel: Mapped[str] = mapped_column(String(16))
    locale: Mapped[str] = mapped_column(String(16))
    answers: Mapped[dict[str, Any]] = mapped_column(JSONType)


class ServiceSecretRow(Base):
    """Keys the service makes itself and all workers share (the alert links' signing key)."""

    __tablename__ = "service_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))


class DirectoryLocationRow(Base):
    """One location of the regulator's public directory, replaced wholesale on import."""

    __tablename__ = "directory_locations"

    location_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    also_known_as: Mapped[str] = mapped_column(Text)
    address: Mapped[str] = mapped_column(Text)
    postcode: Mapped[str] = mapped_column(String(16))
    phone: Mapped[str] = mapped_column(String(64))
    website: Mapped[str] = mapped_column(Text)
    service_types: Mapped[list[str]] = mapped_column(JSONType)
    specialisms: Mapped[list[str]] = mapped_column(JSONType)
    provider_name: Mapped[str] = mapped_column(Text)
    provider_id: Mapped[str] = mapped_column(String(32))
    local_authority: Mapped[str] = mapped_column(Text)
    region: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(Text)
    last_checked: Mapped[date | None] = mapped_column(Date)


class DirectoryMetaRow(Base):
    """A single row (id 1): the directory's version, so workers know when to reload."""

    __tablename__ = "directory_meta"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[str] = mapped_column(String(64))
    produced_on: Mapped[str | None] = mapped_column(String(32))
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime)


# ---------------------------------------------------------------------- staff (migration 0006)
#: Tables of the staff web application (bot/staff): accounts, server-side sessions, the
#: append-only audit log, and the case kept on each report (status, category, assignee, notes).


class StaffAccountRow(Base):
    __tablename__ = "staff_accounts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    #: "officer", "lead" or "admin".
    role: Mapped[str] = mapped_column(String(16))
    #: Argon2id; None until the person has enrolled (or after a reset).
    password_hash: Mapped[str | None] = mapped_column(String(256))
    #: Base32 TOTP secret; None until enrolled.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    #: The last TOTP time step accepted: a code is never accepted twice.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    #: SHA-256 of the one-time enrolment link's token, and when it stops working.
    enrolment_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    enrolment_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StaffSessionRow(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "staff_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(
        BigIntPK, ForeignKey("staff_accounts.id", ondelete="CASCADE"), index=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ip: Mapped[str] = mapped_column(String(64))


class StaffAuditRow(Base):
    """Append-only (triggers refuse UPDATE and DELETE): who did what, when, from where."""

    __tablename__ = "staff_audit"
    __table_args__ = (Index("ix_staff_audit_account_id_id", "account_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: No foreign key: the log outlives anything it mentions.
    account_id: Mapped[int | None] = mapped_column(BigInteger)
    username: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType)
    ip: Mapped[str | None] = mapped_column(String(64))


class ReportCaseRow(Base):
    """The intake team's handling of one report; a report without a row is "new"."""

    __tablename__ = "report_cases"
    __table_args__ = (Index("ix_report_cases_status", "status"),)

    reference: Mapped[str] = mapped_column(
        String(32), ForeignKey("reports.reference", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(32))
    assignee_id: Mapped[int | None] = mapped_column(
        BigIntPK, ForeignKey("staff_accounts.id", ondelete="SET NULL"), index=True
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReportCaseEventRow(Base):
    """The case's history (status, category, assignment) and its internal notes."""

    __tablename__ = "report_case_events"
    __table_args__ = (Index("ix_report_case_events_reference_id", "reference", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(
        String(32), ForeignKey("reports.reference", ondelete="CASCADE")
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    account_id: Mapped[int | None] = mapped_column(BigInteger)
    #: "status", "category", "assignee" or "note".
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)


#: The staff queue reads one priority at a time, oldest first (keyset pagination).
Index(
    "ix_reports_priority_created_at", ReportRow.priority, ReportRow.created_at, ReportRow.reference
)


metadata = Base.metadata

conversations: Table = ConversationRow.__table__  # type: ignore[assignment]
transcript_entries: Table = TranscriptEntryRow.__table__  # type: ignore[assignment]
inbound_messages: Table = InboundMessageRow.__table__  # type: ignore[assignment]
reports: Table = ReportRow.__table__  # type: ignore[assignment]
outbox: Table = OutboxRow.__table__  # type: ignore[assignment]
directory_locations: Table = DirectoryLocationRow.__table__  # type: ignore[assignment]
directory_meta: Table = DirectoryMetaRow.__table__  # type: ignore[assignment]
staff_accounts: Table = StaffAccountRow.__table__  # type: ignore[assignment]
staff_sessions: Table = StaffSessionRow.__table__  # type: ignore[assignment]
staff_audit: Table = StaffAuditRow.__table__  # type: ignore[assignment]
report_cases: Table = ReportCaseRow.__table__  # type: ignore[assignment]
report_case_events: Table = ReportCaseEventRow.__table__  # type: ignore[assignment]
service_secrets: Table = ServiceSecretRow.__table__  # type: ignore[assignment]
alert_subscriptions: Table = AlertSubscriptionRow.__table__  # type: ignore[assignment]
chat_surveys: Table = ChatSurveyRow.__table__  # type: ignore[assignment]
chat_messages: Table = ChatMessageRow.__table__  # type: ignore[assignment]
