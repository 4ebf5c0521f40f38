"""The staff web application: accounts, sessions, the audit log, cases, queue and search.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

New tables only, plus indexes on `reports`, so workers of the previous release keep serving
while this runs:

- `staff_accounts`, `staff_sessions` (server-side sessions: only a token's SHA-256 is kept);
- `staff_audit`, append-only: triggers refuse UPDATE, DELETE (and TRUNCATE on PostgreSQL);
- `report_cases` (status, category, assignee) and `report_case_events` (history and notes);
- `ix_reports_priority_created_at`: the queue reads one priority at a time, oldest first;
- `ix_reports_location_id`: (the report's location id, created_at), an expression index for
  the location filter and "earlier reports about the same place" (kept out of the models, as
  expression indexes are; the query repeats the expression, `storage.staff_reports`);
- full-text search over the report's free text: on SQLite an FTS5 table kept by triggers on
  `reports` (and backfilled here); on PostgreSQL a GIN index on the same text's tsvector
  (the query repeats the indexed expression, `storage.staff.SEARCH_TEXT_PG`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The report's free-text answers that search looks in (kept in step with storage/staff.py).
SEARCH_FIELDS = ("provider_text", "provider_name", "service_other", "service_part", "what_happened")

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _sqlite_text(row: str) -> str:
    return " || ' ' || ".join(
        f"coalesce(json_extract({row}.data, '$.{name}'), '')" for name in SEARCH_FIELDS
    )


def _postgres_text() -> str:
    return " || ' ' || ".join(f"coalesce(data->>'{name}', '')" for name in SEARCH_FIELDS)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("SET LOCAL lock_timeout = '15s'")
    op.create_table(
        "staff_accounts",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=True),
        sa.Column("totp_secret", sa.String(64), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("enrolment_token_hash", sa.String(64), nullable=True),
        sa.Column("enrolment_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_staff_accounts"),
        sa.UniqueConstraint("username", name="uq_staff_accounts_username"),
        sa.UniqueConstraint("enrolment_token_hash", name="uq_staff_accounts_enrolment_token_hash"),
    )
    op.create_table(
        "staff_sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("account_id", BIG_ID, nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["staff_accounts.id"],
            name="fk_staff_sessions_account_id_staff_accounts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_staff_sessions"),
    )
    op.create_index("ix_staff_sessions_account_id", "staff_sessions", ["account_id"])
    op.create_table(
        "staff_audit",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=True),
        sa.Column("username", sa.String(64), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.String(64), nullable=True),
        sa.Column(
            "detail",
            sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_staff_audit"),
    )
    op.create_index("ix_staff_audit_account_id_id", "staff_audit", ["account_id", "id"])
    op.create_table(
        "report_cases",
        sa.Column("reference", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("assignee_id", BIG_ID, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reference"],
            ["reports.reference"],
            name="fk_report_cases_reference_reports",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["assignee_id"],
            ["staff_accounts.id"],
            name="fk_report_cases_assignee_id_staff_accounts",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("reference", name="pk_report_cases"),
    )
    op.create_index("ix_report_cases_status", "report_cases", ["status"])
    op.create_index("ix_report_cases_assignee_id", "report_cases", ["assignee_id"])
    op.create_table(
        "report_case_events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("reference", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.String(64), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["reference"],
            ["reports.reference"],
            name="fk_report_case_events_reference_reports",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_report_case_events"),
    )
    op.create_index(
        "ix_report_case_events_reference_id", "report_case_events", ["reference", "id"]
    )
    op.create_index(
        "ix_reports_priority_created_at", "reports", ["priority", "created_at", "reference"]
    )
    if dialect == "postgresql":
        op.execute(
            """
            CREATE FUNCTION staff_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'staff_audit is append-only'; END $$
            """
        )
        op.execute(
            "CREATE TRIGGER staff_audit_no_change BEFORE UPDATE OR DELETE ON staff_audit "
            "FOR EACH ROW EXECUTE FUNCTION staff_audit_append_only()"
        )
        op.execute(
            "CREATE TRIGGER staff_audit_no_truncate BEFORE TRUNCATE ON staff_audit "
            "FOR EACH STATEMENT EXECUTE FUNCTION staff_audit_append_only()"
        )
        op.execute(
            "CREATE INDEX ix_reports_location_id ON reports ((data ->> 'location_id'), created_at)"
        )
        op.execute(
            f"CREATE INDEX ix_reports_fts ON reports USING gin "
            f"(to_tsvector('simple', {_postgres_text()}))"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER staff_audit_no_{event.lower()} BEFORE {event} ON staff_audit "
                "BEGIN SELECT RAISE(ABORT, 'staff_audit is append-only'); END"
            )
        op.execute(
            "CREATE INDEX ix_reports_location_id ON reports "
            "(json_extract(data, '$.location_id'), created_at)"
        )
        op.execute(
            "CREATE VIRTUAL TABLE reports_fts USING fts5("
            "reference UNINDEXED, body, tokenize = 'unicode61 remove_diacritics 2')"
        )
        op.execute(
            "CREATE TRIGGER reports_fts_insert AFTER INSERT ON reports BEGIN "
            f"INSERT INTO reports_fts (rowid, reference, body) "
            f"VALUES (new.rowid, new.reference, {_sqlite_text('new')}); END"
        )
        op.execute(
            "CREATE TRIGGER reports_fts_delete AFTER DELETE ON reports BEGIN "
            "DELETE FROM reports_fts WHERE rowid = old.rowid; END"
        )
        op.execute(
            "CREATE TRIGGER reports_fts_update AFTER UPDATE OF data ON reports BEGIN "
            "DELETE FROM reports_fts WHERE rowid = old.rowid; "
            f"INSERT INTO reports_fts (rowid, reference, body) "
            f"VALUES (new.rowid, new.reference, {_sqlite_text('new')}); END"
        )
        op.execute(
            "INSERT INTO reports_fts (rowid, reference, body) "
            f"SELECT reports.rowid, reports.reference, {_sqlite_text('reports')} FROM reports"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_reports_fts")
        op.execute("DROP TRIGGER IF EXISTS staff_audit_no_change ON staff_audit")
        op.execute("DROP TRIGGER IF EXISTS staff_audit_no_truncate ON staff_audit")
        op.execute("DROP FUNCTION IF EXISTS staff_audit_append_only()")
    else:
        for name in ("reports_fts_insert", "reports_fts_delete", "reports_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS reports_fts")
    op.execute("DROP INDEX IF EXISTS ix_reports_location_id")
    op.drop_index("ix_reports_priority_created_at", table_name="reports")
    op.drop_table("report_case_events")
    op.drop_table("report_cases")
    op.drop_table("staff_audit")
    op.drop_table("staff_sessions")
    op.drop_table("staff_accounts")
