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

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    reply: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


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
        # "{reference}:{kind}" for messages derived from a report: written at most once.
        Index("uq_outbox_idempotency_key", "idempotency_key", unique=True),
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
    idempotency_key: Mapped[str | None] = mapped_column(String(160))


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


metadata = Base.metadata

conversations: Table = ConversationRow.__table__  # type: ignore[assignment]
transcript_entries: Table = TranscriptEntryRow.__table__  # type: ignore[assignment]
inbound_messages: Table = InboundMessageRow.__table__  # type: ignore[assignment]
reports: Table = ReportRow.__table__  # type: ignore[assignment]
outbox: Table = OutboxRow.__table__  # type: ignore[assignment]
directory_locations: Table = DirectoryLocationRow.__table__  # type: ignore[assignment]
directory_meta: Table = DirectoryMetaRow.__table__  # type: ignore[assignment]
service_secrets: Table = ServiceSecretRow.__table__  # type: ignore[assignment]
alert_subscriptions: Table = AlertSubscriptionRow.__table__  # type: ignore[assignment]
