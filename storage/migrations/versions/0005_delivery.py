"""Delivery: idempotent outbox messages, acknowledged urgent reports, a signing key, a wake-up.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

- `outbox.idempotency_key` (unique where set): a message derived from a report (the
  acknowledgement email, an urgent alert, the hand-off) has the key "{reference}:{kind}", so
  writing it twice (a fan-out retried after a crash) keeps one. Telegram replies have none.
- `reports.acknowledged_at`, `acknowledged_by`: who took charge of an urgent report, and when;
  the escalation and the metrics read them.
- `alert_subscriptions`: "email me when you publish an inspection report on this service",
  kept apart from the report: an address, a location id, the language to write in, and
  the link token, status and the inspection date last told (double opt-in, one-click stop).
- `service_secrets`: keys the service makes itself and every worker shares (the key that signs
  the links in alert emails), so no operator has to invent one.
- `report.submitted` events written before this release are settled unsent (see below).
- PostgreSQL: a trigger NOTIFYs `intake_outbox` with the topic of every new outbox row, so an
  idle dispatcher in any worker wakes at once instead of at its next poll.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("SET LOCAL lock_timeout = '15s'")
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(160), nullable=True))
        batch.create_index("uq_outbox_idempotency_key", ["idempotency_key"], unique=True)
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("acknowledged_at", UTC_DATETIME, nullable=True))
        batch.add_column(sa.Column("acknowledged_by", sa.String(320), nullable=True))
    op.create_table(
        "alert_subscriptions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("location_id", sa.String(32), nullable=False),
        sa.Column("locale", sa.String(16), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("confirmed_at", UTC_DATETIME, nullable=True),
        sa.Column("last_checked_seen", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alert_subscriptions"),
        sa.UniqueConstraint("token", name="uq_alert_subscriptions_token"),
        sa.UniqueConstraint("email", "location_id", name="uq_alert_subscriptions_email_location_id"),
    )
    op.create_index("ix_alert_subscriptions_location_id", "alert_subscriptions", ["location_id"])
    op.create_table(
        "service_secrets",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_service_secrets"),
    )
    # Reports stored before delivery existed were never acknowledged; an email weeks later
    # would confuse more than help, so their old events are settled, not sent.
    op.execute(
        "UPDATE outbox SET status = 'done' WHERE topic = 'report.submitted' AND status = 'pending'"
    )
    if postgres:
        op.execute(
            """
            CREATE OR REPLACE FUNCTION intake_outbox_notify() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('intake_outbox', NEW.topic);
                RETURN NULL;
            END $$
            """
        )
        op.execute(
            """
            CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
            FOR EACH ROW EXECUTE FUNCTION intake_outbox_notify()
            """
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
        op.execute("DROP FUNCTION IF EXISTS intake_outbox_notify()")
    op.drop_table("service_secrets")
    op.drop_index("ix_alert_subscriptions_location_id", table_name="alert_subscriptions")
    op.drop_table("alert_subscriptions")
    with op.batch_alter_table("reports") as batch:
        batch.drop_column("acknowledged_by")
        batch.drop_column("acknowledged_at")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("uq_outbox_idempotency_key")
        batch.drop_column("idempotency_key")
