"""The transactional outbox: events written with the turn, delivered after commit.

Order is kept per (topic, ordering_key): only the oldest pending message of a key can be
claimed, and only while no earlier message of that key is still pending (claimed, or waiting
to be retried). "Oldest" means lowest id; on PostgreSQL ids of one key are allocated in commit
order as long as the writers of one key are serialized, which the conversation row lock does
for the messages of one chat.

Several workers drain one topic together: on PostgreSQL the claim locks its rows with
FOR UPDATE SKIP LOCKED, so a concurrent claimer skips them (and, once committed, sees them
leased); on SQLite the single writer serializes claims.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import exists, or_, select, update

from bot.ports import OutboxMessage
from storage.db import Db
from storage.models import outbox

PENDING = "pending"


class SqlOutbox:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, messages: Sequence[OutboxMessage]) -> None:
        """Insert the messages in order and fill in their id, created_at and available_at."""
        if not messages:
            return
        now = self._db.now()
        rows: list[dict[str, Any]] = [
            {
                "topic": message.topic,
                "ordering_key": message.ordering_key,
                "payload": message.payload,
                "status": message.status,
                "attempts": message.attempts,
                "available_at": message.available_at or now,
                "created_at": message.created_at or now,
                "claimed_until": None,
                "last_error": message.last_error,
                "conversation_id": message.conversation_id,
            }
            for message in messages
        ]
        statement = outbox.insert().returning(outbox.c.id, sort_by_parameter_order=True)
        result = await self._db.execute(statement, rows)
        for message, row, new_id in zip(messages, rows, result.scalars(), strict=True):
            message.id = new_id
            message.created_at = row["created_at"]
            message.available_at = row["available_at"]

    async def claim(self, topic: str, *, limit: int, lease_seconds: float) -> list[OutboxMessage]:
        now = self._db.now()
        earlier = outbox.alias("earlier")
        earlier_pending = exists().where(
            earlier.c.topic == outbox.c.topic,
            earlier.c.ordering_key == outbox.c.ordering_key,
            earlier.c.status == PENDING,
            earlier.c.id < outbox.c.id,
        )
        statement = (
            select(outbox)
            .where(
                outbox.c.topic == topic,
                outbox.c.status == PENDING,
                outbox.c.available_at <= now,
                or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until <= now),
                ~earlier_pending,
            )
            .order_by(outbox.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=outbox)
        )
        rows = (await self._db.execute(statement)).all()
        if not rows:
            return []
        ids = [row.id for row in rows]
        await self._db.execute(
            update(outbox)
            .where(outbox.c.id.in_(ids))
            .values(
                claimed_until=now + timedelta(seconds=lease_seconds),
                attempts=outbox.c.attempts + 1,
            )
        )
        return [
            OutboxMessage(
                topic=row.topic,
                ordering_key=row.ordering_key,
                payload=row.payload,
                id=row.id,
                created_at=row.created_at,
                attempts=row.attempts + 1,
                available_at=row.available_at,
                status=row.status,
                last_error=row.last_error,
                conversation_id=row.conversation_id,
            )
            for row in rows
        ]

    async def mark_done(self, message_id: int) -> None:
        await self._set(message_id, status="done", claimed_until=None)

    async def retry_later(self, message_id: int, *, delay_seconds: float, error: str) -> None:
        """Still pending, so later messages of the key keep waiting behind it."""
        await self._set(
            message_id,
            claimed_until=None,
            available_at=self._db.now() + timedelta(seconds=delay_seconds),
            last_error=error,
        )

    async def mark_failed(self, message_id: int, *, error: str) -> None:
        """Given up: no longer pending, so the key's later messages flow again."""
        await self._set(message_id, status="failed", claimed_until=None, last_error=error)

    async def _set(self, message_id: int, **values: object) -> None:
        await self._db.execute(update(outbox).where(outbox.c.id == message_id).values(**values))
