"""PostgreSQL: the report search index keeps a small pending list (64 kB), merged often.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04

0013 took the pending list away, because the default one (4 MB) was merged inside whichever
submission found it full: 145 to 255 ms, once every few thousand reports. Without a list,
though, each of a report's words goes into the index on its own, and PostgreSQL writes the
word's whole entry to the WAL again each time (a common word's list of reports is kept inside
its entry, up to a third of a page). Measured (`python -m bench --only search`, reports of 60
words at natural frequencies; BENCHMARKS.md): 20.9 KiB of WAL a report without a list, 6.6
with a 64 kB one (the smallest PostgreSQL allows); 4,000 reports that all tell the web bench's
story (a probe), 46 KiB against 2.6. The WAL is what every turn's commit
waits to flush, and what replicas and backups carry: at the web bench's rates the index was
half of all the WAL written, and each new 16 MB WAL file that PostgreSQL had to create
stalled every commit for about 50 ms. A 64 kB list is merged every few dozen reports, a few
milliseconds inside one submission (the slowest of 6,000 inserts 6.3 ms, beside 0013's 4.2).

Searches read the pending list too, so a report is found as soon as it is stored, as before.
The ALTER locks the index alone, until the migration commits (at most a moment; the lock is
given up after 15 s of waiting, as in the other migrations). The downgrade takes the list
away again and merges what it holds. SQLite's full-text table is untouched.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_reports_fts"
#: Kilobytes; PostgreSQL's smallest. The list is merged once it holds more.
PENDING_LIST_KB = 64


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("SET LOCAL lock_timeout = '15s'")
    op.execute(
        f"ALTER INDEX {INDEX} SET (fastupdate = on, gin_pending_list_limit = {PENDING_LIST_KB})"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("SET LOCAL lock_timeout = '15s'")
    op.execute(f"ALTER INDEX {INDEX} SET (fastupdate = off)")
    op.execute(f"ALTER INDEX {INDEX} RESET (gin_pending_list_limit)")
    op.execute(f"SELECT gin_clean_pending_list('{INDEX}'::regclass)")
