"""Mark the conversations the sweeper has work on, so that it reads only those.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

Every worker sweeps each minute: it deletes web conversations never answered an hour after
they opened, and erases what was typed in conversations that ended an hour ago. Neither
look-up had an index it could use: the first read every active web conversation, the second
every finished one (kept for good, only their data erased) with two probes each, a second and
900,000 buffers on 350,000 conversations (BENCHMARKS.md).

No index may mention a column an ordinary turn changes (`updated_at`, `state`, `revision`):
PostgreSQL's update of the turn would no longer be HOT. So two new columns, each NULL
throughout a conversation's turns, carry what is due, with a partial index on each:

- `untouched_at`: `created_at` while the conversation is active and had no turn yet; the
  first turn clears it (`ix_conversations_untouched`, by channel).
- `finished_at`: `updated_at` of a conversation no longer active that the eraser has not been
  through since it last changed; set by the write that ends it, cleared by the eraser
  (`ix_conversations_finished`).

Both columns are nullable with no default: adding them is a catalogue change only on
PostgreSQL. Existing rows are backfilled: untouched active ones, and finished ones that still
have transcript lines or replies kept under their id (once, a scan of the table, inside the
locked upgrade transaction).

Workers of the previous release do not write the columns. A conversation they end during a
rolling upgrade is not marked, so the sweeper does not see it; the daily `intake
conversations purge` marks every finished conversation with data left and no mark
(`mark_unswept`, the backfill's `MARK_FINISHED` again), and the sweeper erases it within the
minute after. A conversation an old worker answers first keeps its `untouched_at`: the sweeper
checks `updated_at = created_at` again and leaves it, and its next turn on this release
clears the mark.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MARK_UNTOUCHED = """
    UPDATE conversations SET untouched_at = created_at
    WHERE status = 'active' AND updated_at = created_at AND untouched_at IS NULL
"""
#: Also what `SqlConversations.mark_unswept` runs (`storage.repositories.MARK_UNSWEPT`).
MARK_FINISHED = """
    UPDATE conversations SET finished_at = updated_at
    WHERE status <> 'active' AND finished_at IS NULL
      AND (EXISTS (SELECT 1 FROM transcript_entries t WHERE t.conversation_id = conversations.id)
           OR EXISTS (SELECT 1 FROM inbound_messages i WHERE i.scope = conversations.id))
"""


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("SET LOCAL lock_timeout = '15s'")
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("untouched_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(MARK_UNTOUCHED)
    op.execute(MARK_FINISHED)
    op.create_index(
        "ix_conversations_untouched",
        "conversations",
        ["channel", "untouched_at"],
        postgresql_where=sa.text("untouched_at IS NOT NULL"),
        sqlite_where=sa.text("untouched_at IS NOT NULL"),
    )
    op.create_index(
        "ix_conversations_finished",
        "conversations",
        ["finished_at", "id"],
        postgresql_where=sa.text("finished_at IS NOT NULL"),
        sqlite_where=sa.text("finished_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_conversations_finished", table_name="conversations")
    op.drop_index("ix_conversations_untouched", table_name="conversations")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("finished_at")
        batch.drop_column("untouched_at")
