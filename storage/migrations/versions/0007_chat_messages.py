"""Chat message ids, for the quick exit to delete (Telegram).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

- `chat_messages`: the ids of a chat's messages, ours and the person's, never their text.
  Typing the exit word deletes them in Telegram (Bot API `deleteMessages`, through the
  outbox); they are erased with their conversation and purged after 48 hours (a bot cannot
  delete an older message). A new, empty table: nothing to backfill.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '15s'")
    op.create_table(
        "chat_messages",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("channel_key", sa.String(128), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("conversation_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_chat_messages"),
    )
    op.create_index("ix_chat_messages_chat", "chat_messages", ["channel", "channel_key", "id"])
    op.create_index("ix_chat_messages_conversation_id", "chat_messages", ["conversation_id"])
    op.create_index("ix_chat_messages_created_at", "chat_messages", ["created_at"])


def downgrade() -> None:
    op.drop_table("chat_messages")
