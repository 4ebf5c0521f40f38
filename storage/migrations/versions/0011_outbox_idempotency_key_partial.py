"""Index only the outbox messages that carry an idempotency key.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

`uq_outbox_idempotency_key` keeps a message derived from a report from being written twice
("{reference}:{kind}"). A Telegram reply has no key, one is written at every turn of a chat,
and each put a NULL in the index: a page more in every Telegram turn's commit on SQLite (its
WAL, 4 KiB), an index entry more on PostgreSQL, for entries nothing looks up (NULLs never
conflict, and every look-up by key names a key). Now the index holds only rows with a key:
the same uniqueness, and `idempotency_key IN (...)` or `LIKE` still imply the index's WHERE.

Both backends rebuild the index (small: the outbox is purged as it is delivered).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYED = "idempotency_key IS NOT NULL"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '15s'")
    op.drop_index("uq_outbox_idempotency_key", table_name="outbox")
    op.create_index(
        "uq_outbox_idempotency_key",
        "outbox",
        ["idempotency_key"],
        unique=True,
        postgresql_where=sa.text(KEYED),
        sqlite_where=sa.text(KEYED),
    )


def downgrade() -> None:
    op.drop_index("uq_outbox_idempotency_key", table_name="outbox")
    op.create_index("uq_outbox_idempotency_key", "outbox", ["idempotency_key"], unique=True)
