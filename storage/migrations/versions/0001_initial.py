"""Initial schema: conversations, transcripts, inbound log, reports, outbox, directory.

Revision ID: 0001
Revises:
Create Date: 2025-11-23

Written by hand to mirror storage/models.py; tests/storage/test_storage_migrations.py checks
that the two agree on every backend.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def TS() -> sa.DateTime:  # noqa: N802
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("channel_key", sa.String(128), nullable=True),
        sa.Column("token_hash", sa.String(64), nullable=True),
        sa.Column("state", JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(32), nullable=True),
        sa.Column("created_at", TS(), nullable=False),
        sa.Column("updated_at", TS(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_conversations"),
    )
    op.create_index(
        "ix_conversations_channel_key", "conversations", ["channel", "channel_key", "status"]
    )

    op.create_table(
        "transcript_entries",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("created_at", TS(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_transcript_entries"),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name="fk_transcript_entries_conversation_id_conversations",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "conversation_id", "seq", name="uq_transcript_entries_conversation_id_seq"
        ),
    )

    op.create_table(
        "inbound_messages",
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("reply", JSON, nullable=False),
        sa.Column("created_at", TS(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "message_id", name="pk_inbound_messages"),
    )
    op.create_index("ix_inbound_messages_created_at", "inbound_messages", ["created_at"])

    op.create_table(
        "reports",
        sa.Column("reference", sa.String(32), nullable=False),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("created_at", TS(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("locale", sa.String(16), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.PrimaryKeyConstraint("reference", name="pk_reports"),
        sa.UniqueConstraint("conversation_id", name="uq_reports_conversation_id"),
    )

    op.create_table(
        "outbox",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("ordering_key", sa.String(128), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", TS(), nullable=False),
        sa.Column("created_at", TS(), nullable=False),
        sa.Column("claimed_until", TS(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index("ix_outbox_claim", "outbox", ["topic", "status", "ordering_key", "id"])

    op.create_table(
        "directory_locations",
        sa.Column("location_id", sa.String(32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("also_known_as", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("postcode", sa.String(16), nullable=False),
        sa.Column("phone", sa.String(64), nullable=False),
        sa.Column("website", sa.Text(), nullable=False),
        sa.Column("service_types", JSON, nullable=False),
        sa.Column("specialisms", JSON, nullable=False),
        sa.Column("provider_name", sa.Text(), nullable=False),
        sa.Column("provider_id", sa.String(32), nullable=False),
        sa.Column("local_authority", sa.Text(), nullable=False),
        sa.Column("region", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("last_checked", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("location_id", name="pk_directory_locations"),
    )

    op.create_table(
        "directory_meta",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("produced_on", sa.String(32), nullable=True),
        sa.Column("imported_at", TS(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_directory_meta"),
    )


def downgrade() -> None:
    op.drop_table("directory_meta")
    op.drop_table("directory_locations")
    op.drop_index("ix_outbox_claim", table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("reports")
    op.drop_index("ix_inbound_messages_created_at", table_name="inbound_messages")
    op.drop_table("inbound_messages")
    op.drop_table("transcript_entries")
    op.drop_index("ix_conversations_channel_key", table_name="conversations")
    op.drop_table("conversations")
