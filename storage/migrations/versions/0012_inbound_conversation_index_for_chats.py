"""Index the kept replies by conversation only where their scope is not the conversation.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

`ix_inbound_messages_conversation_id` lets erasure find a conversation's kept replies. A web
conversation's replies are kept under its own id as their scope, the primary key's prefix,
which finds them as well; only a chat's (scope "telegram:<bot>") need the index. Every web
turn wrote an entry to it all the same: on SQLite a 4 KiB page more in the turn's WAL (about
one in eleven), on PostgreSQL an index entry more. The index now holds only rows whose
`conversation_id` differs from their scope, and erasure reads the others by scope
(`storage.erasure.REPLIES_OF_CONVERSATION`).

Both backends rebuild the index: a scan of the table, whose rows are purged after
`INTAKE_REPLY_RETENTION_HOURS`. A worker of the previous release still erases correctly
during a rolling restart (`conversation_id = ...` finds web rows too), but by a scan of the
table, which the partial index cannot serve: slower, for the minutes of the restart.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OTHER_SCOPE = "conversation_id <> scope"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '15s'")
    op.drop_index("ix_inbound_messages_conversation_id", table_name="inbound_messages")
    op.create_index(
        "ix_inbound_messages_conversation_id",
        "inbound_messages",
        ["conversation_id"],
        postgresql_where=sa.text(OTHER_SCOPE),
        sqlite_where=sa.text(OTHER_SCOPE),
    )


def downgrade() -> None:
    op.drop_index("ix_inbound_messages_conversation_id", table_name="inbound_messages")
    op.create_index(
        "ix_inbound_messages_conversation_id", "inbound_messages", ["conversation_id"]
    )
