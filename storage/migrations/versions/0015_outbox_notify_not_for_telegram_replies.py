"""PostgreSQL: the outbox trigger no longer NOTIFYs for a Telegram reply.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04

The NOTIFY wakes the dispatchers that LISTEN, and only the delivery dispatcher does (the report
topics: e-mail, SMS, the alert and hand-off webhooks). The Telegram channel's dispatcher does
not: a reply is claimed in its turn's own transaction, or by the settle of its chat's reply
before it, or at the next poll, in the worker whose turn wrote it or any other. Yet every
Telegram turn's reply was notified, so each turn's commit woke the listening backend of every
worker, and every worker's event loop, to be ignored. Without it, PostgreSQL's CPU a Telegram
update at half load was 8% lower (the median of 12 rounds either way, alternated on one server;
lower in 10 of the 12 pairs; the server's own CPU the same within the rounds' spread:
BENCHMARKS.md, "Telegram replies without a NOTIFY"). The trigger fires for every other topic
as before.

`telegram.send` is `bot.channels.telegram.delivery.TOPIC` as of this revision (a test holds the
two together). Creating the trigger again locks the outbox against writes for a moment; the
lock is given up after 15 s of waiting, as in the other migrations. The downgrade notifies for
every row again.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TELEGRAM_REPLIES = "telegram.send"


def _notify_trigger(when: str) -> None:
    op.execute("SET LOCAL lock_timeout = '15s'")
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute(
        f"""
        CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
        FOR EACH ROW {when} EXECUTE FUNCTION intake_outbox_notify()
        """
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _notify_trigger(f"WHEN (NEW.topic <> '{TELEGRAM_REPLIES}')")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _notify_trigger("")
