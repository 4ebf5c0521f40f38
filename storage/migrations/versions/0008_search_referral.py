"""Staff search also finds the organisation that pointed a person to us (`referral_name`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

The report's free text now includes the name of the charity, advocate or organisation that
suggested the person tell us. The text search covers it as it covers the other free text:

- PostgreSQL: the GIN index on the text's tsvector is rebuilt over the new expression (the
  query repeats it, `storage.staff_reports.SEARCH_TEXT_PG`);
- SQLite: the FTS5 triggers write the new text, and every row is indexed again.

Reports are unchanged (the answer lives in `reports.data`, like every other answer).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The report's free-text answers that search looks in (kept in step with
#: storage/staff_reports.py); before this revision, without `referral_name`.
SEARCH_FIELDS = (
    "provider_text",
    "provider_name",
    "service_other",
    "service_part",
    "what_happened",
    "referral_name",
)
SEARCH_FIELDS_0006 = SEARCH_FIELDS[:-1]


def _sqlite_text(row: str, fields: Sequence[str]) -> str:
    return " || ' ' || ".join(
        f"coalesce(json_extract({row}.data, '$.{name}'), '')" for name in fields
    )


def _postgres_text(fields: Sequence[str]) -> str:
    return " || ' ' || ".join(f"coalesce(data->>'{name}', '')" for name in fields)


def _index(fields: Sequence[str]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '15s'")
        op.execute("DROP INDEX IF EXISTS ix_reports_fts")
        op.execute(
            f"CREATE INDEX ix_reports_fts ON reports USING gin "
            f"(to_tsvector('simple', {_postgres_text(fields)}))"
        )
        return
    for name in ("reports_fts_insert", "reports_fts_update"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute(
        "CREATE TRIGGER reports_fts_insert AFTER INSERT ON reports BEGIN "
        "INSERT INTO reports_fts (rowid, reference, body) "
        f"VALUES (new.rowid, new.reference, {_sqlite_text('new', fields)}); END"
    )
    op.execute(
        "CREATE TRIGGER reports_fts_update AFTER UPDATE OF data ON reports BEGIN "
        "DELETE FROM reports_fts WHERE rowid = old.rowid; "
        "INSERT INTO reports_fts (rowid, reference, body) "
        f"VALUES (new.rowid, new.reference, {_sqlite_text('new', fields)}); END"
    )
    # Every row again, with the new text.
    op.execute("DELETE FROM reports_fts")
    op.execute(
        "INSERT INTO reports_fts (rowid, reference, body) "
        f"SELECT reports.rowid, reports.reference, {_sqlite_text('reports', fields)} FROM reports"
    )


def upgrade() -> None:
    _index(SEARCH_FIELDS)


def downgrade() -> None:
    _index(SEARCH_FIELDS_0006)
