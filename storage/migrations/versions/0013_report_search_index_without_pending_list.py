"""PostgreSQL: the report search index takes each report at once, not in a pending list.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03

A GIN index by default puts new entries in a pending list and merges the list into the index
once it outgrows `gin_pending_list_limit` (4 MB), inside whichever insert finds it full. For
`ix_reports_fts` that insert is a person's submission: reports of 60 words inserted one a
transaction (`python -m bench --only search`; BENCHMARKS.md) took under a millisecond, but
one in every 2,500 to 8,000 (by how many different words they use) took 145 to 255 ms, the
whole list merged on the server's CPU and written to the WAL while every other turn's commit
shared both. Without the pending list each report's words go into the index as it is
stored: the median insert is up to 0.3 ms dearer, the slowest under 10 ms. PostgreSQL's
documentation advises this "if consistent response time is more important than update
speed"; reports come a few a second at most.

Turning it off does not empty the list already there, so the upgrade merges it
(`gin_clean_pending_list`): once, in the migration, rather than in a submission later. The
ALTER locks the index alone, not the table, until the migration commits: submissions and word
searches wait that long (at most a list's merge, a few hundred milliseconds; the lock is given
up after 15 s of waiting for it, as in the other migrations).
SQLite's full-text table is untouched.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_reports_fts"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("SET LOCAL lock_timeout = '15s'")
    op.execute(f"ALTER INDEX {INDEX} SET (fastupdate = off)")
    op.execute(f"SELECT gin_clean_pending_list('{INDEX}'::regclass)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("SET LOCAL lock_timeout = '15s'")
    op.execute(f"ALTER INDEX {INDEX} RESET (fastupdate)")
