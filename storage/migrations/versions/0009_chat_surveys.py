"""The survey about the chat, kept apart from the reports.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

- `chat_surveys`: one row per answered survey: the day (not the time), the channel, the
  language and the answers. Nothing links a row to a report, a conversation or a person, so
  the answers are anonymous. A new table only: workers of the previous release keep serving.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chat_surveys",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("locale", sa.String(16), nullable=False),
        sa.Column(
            "answers", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name="pk_chat_surveys"),
    )
    op.create_index("ix_chat_surveys_day", "chat_surveys", ["day"])


def downgrade() -> None:
    op.drop_index("ix_chat_surveys_day", table_name="chat_surveys")
    op.drop_table("chat_surveys")
