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
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.ports import OutboxMessage, OutboxTopicStats
from storage.db import Db
from storage.errors import storage_errors
from storage.models import outbox
from storage.turns import sqlite_time

log = logging.getLogger(__name__)

PENDING = "pending"
FAILED = "failed"
#: The PostgreSQL channel the outbox trigger (migration 0005) notifies with each new topic.
NOTIFY_CHANNEL = "intake_outbox"


#: Each statement of the delivery path is built once, so SQLAlchemy compiles it once (its
#: cache is keyed by the statement): building the claim per call was a fifth of the sending
#: process's CPU in the profile (BENCHMARKS.md).
_NOW = bindparam("now", type_=outbox.c.available_at.type)
_MESSAGE_ID = bindparam("message_id", type_=outbox.c.id.type)

_pick = outbox.alias("pick")
_head = outbox.alias("head")
#: The oldest pending message of each key (the only one of the key that may be claimed).
#: Read from `ix_outbox_claim` (topic, status, ordering_key, id): the pending entries only.
_HEADS = (
    select(func.min(_head.c.id))
    .where(
        _head.c.topic.in_(bindparam("topics", expanding=True)),
        _head.c.status == PENDING,
    )
    .group_by(_head.c.topic, _head.c.ordering_key)
)
#: One statement claims: the oldest pending message of each key, if it is due and unleased,
#: oldest first, locked so that a concurrent claimer skips it (PostgreSQL; on SQLite the
#: single writer serializes claims), leased and counted as an attempt. The heads are found
#: first and the due and lease tests made on them alone: written as "no earlier pending
#: message of the key" (an anti-join per pending row), PostgreSQL walked the primary key
#: from the first row ever written, delivered ones included, so every claim read the whole
#: table and each more slowly than the last (BENCHMARKS.md, "The outbox claim").
_CLAIM = (
    update(outbox)
    .where(
        outbox.c.id.in_(
            select(_pick.c.id)
            .where(
                _pick.c.id.in_(_HEADS),
                # Again on the row itself, so that PostgreSQL tests the version it locks (and,
                # with the topic, reads the pending messages from `ix_outbox_claim` only).
                _pick.c.topic.in_(bindparam("topics", expanding=True)),
                _pick.c.status == PENDING,
                _pick.c.available_at <= _NOW,
                or_(_pick.c.claimed_until.is_(None), _pick.c.claimed_until <= _NOW),
            )
            .order_by(_pick.c.id)
            .limit(bindparam("limit", type_=Integer))
            .with_for_update(skip_locked=True, of=_pick)
        )
    )
    .values(
        claimed_until=bindparam("lease_until", type_=outbox.c.claimed_until.type),
        attempts=outbox.c.attempts + 1,
    )
    .returning(*outbox.c)
)

#: A message added already claimed by its writer (`add(claim_for=...)`), unless an earlier
#: message of its key is still pending: then it waits its turn like any other. It is written
#: in the turn's transaction, so it runs on the driver's connection as the turn's own
#: statements do (`storage.turns`), in one hand-off to aiosqlite's thread or one round trip.
_KEY_BUSY = """EXISTS (SELECT 1 FROM outbox AS earlier
                       WHERE earlier.topic = {topic} AND earlier.ordering_key = {key}
                         AND earlier.status = 'pending')"""
_ADD_CLAIMED_COLUMNS = """INSERT INTO outbox (idempotency_key, topic, ordering_key, payload,
        status, attempts, available_at, created_at, claimed_until, last_error, conversation_id)"""
PG_ADD_CLAIMED = f"""{_ADD_CLAIMED_COLUMNS}
    VALUES ($1, $2::varchar, $3::varchar, $4, $5,
            CASE WHEN {_KEY_BUSY.format(topic="$2::varchar", key="$3::varchar")} THEN 0 ELSE 1 END,
            $6, $7,
            CASE WHEN {_KEY_BUSY.format(topic="$2::varchar", key="$3::varchar")}
                 THEN NULL ELSE $8::timestamptz END,
            $9, $10)
    RETURNING id, attempts
"""
SQLITE_ADD_CLAIMED = f"""{_ADD_CLAIMED_COLUMNS}
    VALUES (:idempotency_key, :topic, :ordering_key, :payload, :status,
            CASE WHEN {_KEY_BUSY.format(topic=":topic", key=":ordering_key")} THEN 0 ELSE 1 END,
            :available_at, :created_at,
            CASE WHEN {_KEY_BUSY.format(topic=":topic", key=":ordering_key")}
                 THEN NULL ELSE :claim_until END,
            :last_error, :conversation_id)
    RETURNING id, attempts
"""

#: A message added unclaimed (the claim finds it): on the driver's connection as well.
PG_ADD = f"""{_ADD_CLAIMED_COLUMNS}
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10)
    RETURNING id
"""
SQLITE_ADD = f"""{_ADD_CLAIMED_COLUMNS}
    VALUES (:idempotency_key, :topic, :ordering_key, :payload, :status, :attempts,
            :available_at, :created_at, NULL, :last_error, :conversation_id)
    RETURNING id
"""

_DONE = update(outbox).where(outbox.c.id == _MESSAGE_ID).values(status="done", claimed_until=None)
_DONE_KEEPING = (
    update(outbox)
    .where(outbox.c.id == _MESSAGE_ID)
    .values(
        status="done", claimed_until=None, payload=bindparam("keep", type_=outbox.c.payload.type)
    )
)
_RETRY_LATER = (
    update(outbox)
    .where(outbox.c.id == _MESSAGE_ID)
    .values(
        claimed_until=None,
        available_at=bindparam("available_at_", type_=outbox.c.available_at.type),
        last_error=bindparam("error", type_=outbox.c.last_error.type),
    )
)
_FAILED = (
    update(outbox)
    .where(outbox.c.id == _MESSAGE_ID)
    .values(
        status=FAILED,
        claimed_until=None,
        last_error=bindparam("error", type_=outbox.c.last_error.type),
    )
)


class SqlOutbox:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(
        self, messages: Sequence[OutboxMessage], *, claim_for: float | None = None
    ) -> builtins.list[OutboxMessage]:
        """Insert the messages in order and fill in their id, created_at and available_at.

        With `claim_for`, each message is also claimed for that many seconds, as `claim`
        would, unless an earlier message of its key is still pending: the writer's own
        process sends it right after the commit, without waiting for a claim, and if that
        process dies the lease expires and any dispatcher sends it. Returns the messages so
        claimed (their `attempts` is 1)."""
        if not messages:
            return []
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
                return []
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
        claimed: builtins.list[OutboxMessage] = []
        if claim_for is not None:
            until = now + timedelta(seconds=claim_for)
            for message, row in zip(messages, rows, strict=True):
                message.id, message.attempts = await self._add_claimed(row, until)
                if message.attempts:
                    claimed.append(message)
        else:
            for message, row in zip(messages, rows, strict=True):
                message.id = await self._add_unclaimed(row)
        for message, row in zip(messages, rows, strict=True):
            message.created_at = row["created_at"]
            message.available_at = row["available_at"]
        return claimed

    async def _add_claimed(self, row: dict[str, Any], until: datetime) -> tuple[int, int]:
        """Insert one row, claimed until `until` unless its key is busy: (id, attempts), in one
        round trip (PostgreSQL) or one hand-off to aiosqlite's thread (`Db.run_sqlite`).
        Values are stored as SQLAlchemy stores them (`storage.turns`): JSON as `json.dumps`
        text, timestamps aware (PostgreSQL) or as SQLite's naive UTC text."""
        payload = json.dumps(row["payload"])
        if self._db.is_postgres:
            driver = await self._db.driver()
            with storage_errors():
                inserted = await driver.fetchrow(
                    PG_ADD_CLAIMED,
                    row["idempotency_key"],
                    row["topic"],
                    row["ordering_key"],
                    payload,
                    row["status"],
                    row["available_at"],
                    row["created_at"],
                    until,
                    row["last_error"],
                    row["conversation_id"],
                )
                return int(inserted["id"]), int(inserted["attempts"])
        parameters = {
            **row,
            "payload": payload,
            "available_at": sqlite_time(row["available_at"]),
            "created_at": sqlite_time(row["created_at"]),
            "claim_until": sqlite_time(until),
        }

        def insert(connection: sqlite3.Connection) -> tuple[int, int]:
            new_id, attempts = connection.execute(SQLITE_ADD_CLAIMED, parameters).fetchone()
            return int(new_id), int(attempts)

        return await self._db.run_sqlite(insert)

    async def _add_unclaimed(self, row: dict[str, Any]) -> int:
        """Insert one row, for a claim to find: its id, in one round trip or one hand-off,
        stored as `_add_claimed` stores it. Through SQLAlchemy this was the largest part of a
        Telegram turn's reply whenever the dispatcher had no slot to claim it in."""
        payload = json.dumps(row["payload"])
        if self._db.is_postgres:
            driver = await self._db.driver()
            with storage_errors():
                new_id = await driver.fetchval(
                    PG_ADD,
                    row["idempotency_key"],
                    row["topic"],
                    row["ordering_key"],
                    payload,
                    row["status"],
                    row["attempts"],
                    _utc(row["available_at"]),
                    _utc(row["created_at"]),
                    row["last_error"],
                    row["conversation_id"],
                )
                return int(new_id)
        parameters = {
            **row,
            "payload": payload,
            "available_at": sqlite_time(row["available_at"]),
            "created_at": sqlite_time(row["created_at"]),
        }

        def insert(connection: sqlite3.Connection) -> int:
            (new_id,) = connection.execute(SQLITE_ADD, parameters).fetchone()
            return int(new_id)

        return await self._db.run_sqlite(insert)

    async def claim(
        self, topic: str | Sequence[str], *, limit: int, lease_seconds: float
    ) -> builtins.list[OutboxMessage]:
        now = self._db.now()
        topics = [topic] if isinstance(topic, str) else list(topic)
        rows = (
            await self._db.execute(
                _CLAIM,
                {
                    "topics": topics,
                    "now": now,
                    "limit": limit,
                    "lease_until": now + timedelta(seconds=lease_seconds),
                },
            )
        ).all()
        return [_message(row) for row in sorted(rows, key=lambda row: row.id)]

    async def mark_done(self, message_id: int, *, keep: dict[str, Any] | None = None) -> None:
        if keep is None:
            await self._db.execute(_DONE, {"message_id": message_id})
        else:
            await self._db.execute(_DONE_KEEPING, {"message_id": message_id, "keep": keep})

    async def retry_later(self, message_id: int, *, delay_seconds: float, error: str) -> None:
        """Still pending, so later messages of the key keep waiting behind it."""
        available_at = self._db.now() + timedelta(seconds=delay_seconds)
        await self._db.execute(
            _RETRY_LATER,
            {"message_id": message_id, "available_at_": available_at, "error": error},
        )

    async def mark_failed(self, message_id: int, *, error: str) -> None:
        """Given up: no longer pending, so the key's later messages flow again."""
        await self._db.execute(_FAILED, {"message_id": message_id, "error": error})

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


def _utc(moment: datetime) -> datetime:
    """As `UTCDateTime` binds a time on PostgreSQL: naive taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


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
