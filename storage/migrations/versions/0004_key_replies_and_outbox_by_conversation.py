"""Key the kept replies and the outbox rows by conversation, so erasing one finds them all.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

A reply kept for idempotency (`inbound_messages.reply`) and a Telegram reply in the outbox
(`outbox.payload`) can carry what the person typed: the summary repeats every answer. Erasing
a conversation (cancel, the "not ours" end, the idle purge) must delete those copies in the
same transaction, which needs an indexed key rather than a search through JSON.

Both columns are nullable with no default: adding them is a catalogue change only on
PostgreSQL, and workers of the previous release, which do not know the column, keep
inserting rows meanwhile. Existing rows are backfilled from the conversation id that both
JSON documents already hold. Rows that old workers write during a rolling upgrade stay NULL:
the erasure of a conversation misses them, but the daily `intake conversations purge` deletes
every kept reply and every delivered chat message once the retry window has passed, keyed or
not, so they do not outlive that window.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, JSON column) whose document holds "conversation_id".
KEYED = (("inbound_messages", "reply"), ("outbox", "payload"))


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("SET LOCAL lock_timeout = '15s'")
    for table, document in KEYED:
        op.add_column(table, sa.Column("conversation_id", sa.String(64), nullable=True))
        op.create_index(f"ix_{table}_conversation_id", table, ["conversation_id"])
        found = (
            f"{document} ->> 'conversation_id'"
            if postgres
            else f"json_extract({document}, '$.conversation_id')"
        )
        op.execute(
            f"UPDATE {table} SET conversation_id = {found} "
            f"WHERE conversation_id IS NULL AND {found} IS NOT NULL"
        )


def downgrade() -> None:
    for table, _document in reversed(KEYED):
        op.drop_index(f"ix_{table}_conversation_id", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("conversation_id")
