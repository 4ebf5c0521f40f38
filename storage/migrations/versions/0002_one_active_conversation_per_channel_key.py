"""At most one active conversation per channel address (a Telegram chat).

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-24

Two first messages of one chat, handled by two workers at the same moment, both found no
active conversation and both opened one. A partial unique index makes the second INSERT
conflict instead; the service then retries the turn and finds the first one.

Safe while workers of the previous release still serve: the index is built inside the locked
upgrade transaction (a SHARE lock on `conversations` for the few milliseconds the build takes;
writers wait, readers do not). `lock_timeout` bounds how long the upgrade queues behind a busy
turn, so that it fails and can be re-run rather than stall every worker behind it. Duplicates
that the race may already have created are closed first, keeping the newest active one (the
one `find_active` has been answering with), so the unique build cannot fail on old data.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_conversations_active_channel_key"
WHERE = "status = 'active' AND channel_key IS NOT NULL"

#: Active rows that are not the newest active row of their (channel, channel_key).
_SUPERSEDED = f"""
    {WHERE} AND EXISTS (
        SELECT 1 FROM conversations AS newer
        WHERE newer.channel = conversations.channel
          AND newer.channel_key = conversations.channel_key
          AND newer.status = 'active'
          AND (newer.created_at > conversations.created_at
               OR (newer.created_at = conversations.created_at AND newer.id > conversations.id))
    )
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("SET LOCAL lock_timeout = '15s'")
        set_ended = "state = jsonb_set(state, '{status}', '\"ended\"')"
    else:
        set_ended = "state = json_set(state, '$.status', 'ended')"
    op.execute(f"UPDATE conversations SET status = 'ended', {set_ended} WHERE {_SUPERSEDED}")
    op.create_index(
        INDEX,
        "conversations",
        ["channel", "channel_key"],
        unique=True,
        postgresql_where=sa.text(WHERE),
        sqlite_where=sa.text(WHERE),
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="conversations")
