"""The outbox claim with a backlog: what it claims, and (PostgreSQL) that it reads the pending
messages only, not every message ever delivered."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, text

from storage.models import outbox
from storage.sqlalchemy_storage import SqlStorage, SqlUnitOfWork
from tests.storage.conftest import Clock

#: Delivered messages before the backlog (the read test: as many as a busy day leaves).
DELIVERED = 300
MANY_DELIVERED = 30_000
KEYS = 30
PER_KEY = 10


async def _fill(storage: SqlStorage, clock: Clock, delivered: int = DELIVERED) -> None:
    """`delivered` delivered messages, then KEYS keys of PER_KEY pending ones each: of the keys'
    heads, every third is leased and every third waits for a retry."""
    now = clock()
    rows: list[dict[str, Any]] = [
        {
            "topic": "send",
            "ordering_key": f"old{n % 500}",
            "payload": {"kind": "reply"},
            "status": "done",
            "attempts": 1,
            "available_at": now,
            "created_at": now,
            "claimed_until": None,
        }
        for n in range(DELIVERED if delivered else 0)
    ]
    for n in range(KEYS * PER_KEY):
        key, position = n % KEYS, n // KEYS
        head = position == 0
        rows.append(
            {
                "topic": "send",
                "ordering_key": f"k{key}",
                "payload": {"label": f"k{key}-{position}"},
                "status": "pending",
                "attempts": 1 if head and key % 3 != 2 else 0,
                "available_at": now + timedelta(hours=1) if head and key % 3 == 1 else now,
                "created_at": now,
                "claimed_until": now + timedelta(hours=1) if head and key % 3 == 0 else None,
            }
        )
    async with storage.unit_of_work() as uow:
        assert isinstance(uow, SqlUnitOfWork) and uow._db is not None
        if delivered > DELIVERED:  # PostgreSQL: many, quickly
            await uow._db.execute(
                text(
                    "INSERT INTO outbox (topic, ordering_key, payload, status, attempts, "
                    "available_at, created_at) SELECT 'send', 'old' || (n % 500), "
                    "'{\"kind\": \"reply\"}', 'done', 1, now(), now() "
                    "FROM generate_series(1, :delivered) AS n"
                ),
                {"delivered": delivered - DELIVERED},
            )
        await uow._db.execute(insert(outbox), rows)
        await uow.commit()


async def test_a_claim_takes_the_due_head_of_each_free_key_oldest_first(
    storage: SqlStorage, clock: Clock
) -> None:
    """Behind a leased head or one waiting for its retry, a key's later messages wait; the
    due heads are claimed oldest first, up to the limit, and then nothing more."""
    await _fill(storage, clock)
    async with storage.unit_of_work() as uow:
        first = await uow.outbox.claim("send", limit=4, lease_seconds=30)
        rest = await uow.outbox.claim("send", limit=100, lease_seconds=30)
        again = await uow.outbox.claim("send", limit=100, lease_seconds=30)
        await uow.commit()
    free = [f"k{key}-0" for key in range(KEYS) if key % 3 == 2]
    assert [m.payload["label"] for m in first] == free[:4]
    assert [m.payload["label"] for m in rest] == free[4:]
    assert again == []
    assert all(m.attempts == 1 for m in first + rest)


@pytest.mark.parametrize("analyzed", [True, False], ids=["analyzed", "not-analyzed"])
async def test_a_claim_reads_the_pending_messages_not_the_delivered_ones(
    storage: SqlStorage, clock: Clock, analyzed: bool
) -> None:
    """PostgreSQL: the rows a claim reads (this transaction's statistics) are about the
    pending ones, however many were delivered before. The claim written as "no earlier
    pending message of the key" was planned as a walk of the primary key from the first row
    ever written: every delivered message read again by every claim. Nor may it read the
    pending ones once per pending one, as a plain `IN (heads)` was planned on a table not yet
    analyzed (the first minute of a new database, or of a burst into an empty table)."""
    if storage.backend != "postgresql":
        return
    await _fill(storage, clock, MANY_DELIVERED)
    if analyzed:
        async with storage.engine.connect() as connection:
            await connection.execute(text("ANALYZE outbox"))  # as autovacuum would have by now
            await connection.commit()
    async with storage.unit_of_work() as uow:
        assert isinstance(uow, SqlUnitOfWork) and uow._db is not None
        claimed = await uow.outbox.claim("send", limit=16, lease_seconds=30)
        read = (
            await uow._db.execute(
                text(
                    "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
                    "FROM pg_stat_xact_user_tables "
                    "WHERE relname = 'outbox' AND schemaname = current_schema()"
                )
            )
        ).scalar_one()
    assert len(claimed) == KEYS // 3
    assert read <= 3 * KEYS * PER_KEY < MANY_DELIVERED, read
