"""The next transcript sequence number, kept on the conversation row.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

A turn used to ask `SELECT max(seq) FROM transcript_entries` before appending its lines: one
more statement and round trip per turn. The conversation row, which every turn locks and
updates anyway, now carries the number the next line gets, so the turn's read returns it and
the turn's write advances it.

Existing rows are backfilled with max(seq) + 1 (1 for an empty transcript) inside the locked
upgrade transaction; the server default of 1 lets workers of the previous release keep opening
conversations meanwhile. Those workers do not advance the column, so the turn's read takes the
larger of the column and max(seq) + 1 (an index look-up in the same statement): both releases
can serve side by side during a rolling upgrade.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '15s'")
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(
            sa.Column("transcript_seq", sa.Integer(), server_default="1", nullable=False)
        )
    op.execute(
        """
        UPDATE conversations SET transcript_seq = COALESCE(
            (SELECT max(seq) + 1 FROM transcript_entries
             WHERE transcript_entries.conversation_id = conversations.id),
            1)
        WHERE EXISTS (SELECT 1 FROM transcript_entries
                      WHERE transcript_entries.conversation_id = conversations.id)
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("transcript_seq")
