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

import asyncio
import builtins
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.ports import OutboxMessage, OutboxTopicStats
from storage.db import Db
from storage.models import outbox

log = logging.getLogger(__name__)

PENDING = "pending"
FAILED = "failed"
#: The PostgreSQL channel the outbox trigger (migration 0005) notifies with each new topic.
NOTIFY_CHANNEL = "intake_outbox"


class SqlOutbox:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, messages: Sequence[OutboxMessage]) -> None:
        """Insert the messages in order and fill in their id, created_at and available_at."""
        if not messages:
            return
        keyed = [m.idempotency_key for m in messages if m.idempotency_key is not None]
        if keyed:
            existing = set(
                (
                    await self._db.execute(
                        select(outbox.c.idempotency_key).where(outbox.c.idempotency_key.in_(keyed))
                    )
                ).scalars()
            )
            messages = [m for m in messages if m.idempotency_key not in existing]
            if not messages:
                return
        now = self._db.now()
        rows: list[dict[str, Any]] = [
            {
                "idempotency_key": message.idempotency_key,
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

    async def claim(
        self, topic: str | Sequence[str], *, limit: int, lease_seconds: float
    ) -> builtins.list[OutboxMessage]:
        now = self._db.now()
        topics = [topic] if isinstance(topic, str) else list(topic)
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
                outbox.c.topic.in_(topics),
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
        return [_message(row, attempts=row.attempts + 1) for row in rows]

    async def mark_done(self, message_id: int, *, keep: dict[str, Any] | None = None) -> None:
        if keep is None:
            await self._set(message_id, status="done", claimed_until=None)
        else:
            await self._set(message_id, status="done", claimed_until=None, payload=keep)

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

    async def list(
        self,
        *,
        status: str | None = None,
        topic: str | None = None,
        key_prefix: str | None = None,
        limit: int = 100,
    ) -> builtins.list[OutboxMessage]:
        statement = select(outbox).order_by(outbox.c.id.desc()).limit(limit)
        if status is not None:
            statement = statement.where(outbox.c.status == status)
        if topic is not None:
            statement = statement.where(outbox.c.topic == topic)
        if key_prefix is not None:
            escaped = key_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            statement = statement.where(outbox.c.idempotency_key.like(escaped + "%", escape="\\"))
        return [_message(row) for row in await self._db.execute(statement)]

    async def requeue(self, message_ids: Sequence[int] | None = None) -> int:
        statement = (
            update(outbox)
            .where(outbox.c.status == FAILED)
            .values(
                status=PENDING,
                attempts=0,
                available_at=self._db.now(),
                claimed_until=None,
            )
        )
        if message_ids is not None:
            statement = statement.where(outbox.c.id.in_(list(message_ids)))
        return int((await self._db.execute(statement)).rowcount)

    async def purge(self, message_ids: Sequence[int] | None = None) -> int:
        statement = delete(outbox).where(outbox.c.status == FAILED)
        if message_ids is not None:
            statement = statement.where(outbox.c.id.in_(list(message_ids)))
        return int((await self._db.execute(statement)).rowcount)

    async def stats(self) -> builtins.list[OutboxTopicStats]:
        pending = outbox.c.status == PENDING
        statement = (
            select(
                outbox.c.topic,
                func.count().filter(pending).label("pending"),
                func.min(outbox.c.created_at).filter(pending).label("oldest"),
                func.count().filter(outbox.c.status == FAILED).label("failed"),
            )
            .where(outbox.c.status.in_((PENDING, FAILED)))
            .group_by(outbox.c.topic)
            .order_by(outbox.c.topic)
        )
        rows = await self._db.execute(statement)
        return [
            OutboxTopicStats(
                topic=row.topic,
                pending=int(row.pending),
                oldest_pending_at=_aware(row.oldest),
                failed=int(row.failed),
            )
            for row in rows
        ]


def _aware(value: Any) -> Any:
    """min() over a UTCDateTime column comes back untyped on SQLite: make it an aware UTC time."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _message(row: Any, *, attempts: int | None = None) -> OutboxMessage:
    return OutboxMessage(
        topic=row.topic,
        ordering_key=row.ordering_key,
        payload=row.payload,
        id=row.id,
        created_at=row.created_at,
        attempts=row.attempts if attempts is None else attempts,
        available_at=row.available_at,
        status=row.status,
        last_error=row.last_error,
        idempotency_key=row.idempotency_key,
        conversation_id=row.conversation_id,
    )


async def listen_for_outbox(
    engine: AsyncEngine, wake: Callable[[str], None], *, reconnect_delay: float = 5.0
) -> None:
    """Call `wake(topic)` whenever any process commits a new outbox row (PostgreSQL NOTIFY).

    Runs until cancelled, reconnecting after a lost connection; returns at once on SQLite,
    where the dispatcher's poll (and the in-process wake after a turn) is all there is.
    Missing a notification costs only latency: the dispatcher still polls.
    """
    if engine.dialect.name != "postgresql":
        return

    def on_notify(_connection: object, _pid: int, _channel: str, topic: str) -> None:
        wake(topic)

    while True:
        try:
            async with engine.connect() as connection:
                raw = await connection.get_raw_connection()
                driver = raw.driver_connection
                assert driver is not None
                lost = asyncio.Event()
                driver.add_termination_listener(lambda _c, lost=lost: lost.set())
                await driver.add_listener(NOTIFY_CHANNEL, on_notify)
                # Anything written while we were not listening is found by this wake's claim.
                wake("")
                try:
                    await lost.wait()
                finally:
                    if not driver.is_closed():
                        await driver.remove_listener(NOTIFY_CHANNEL, on_notify)
                    await connection.invalidate()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("outbox: LISTEN lost (%s); polling until it is back", type(error).__name__)
        await asyncio.sleep(reconnect_delay)
