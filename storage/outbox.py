"""The transactional outbox: events written with the turn, delivered after commit.

Order is kept per (topic, ordering_key): only the oldest pending message of a key can be
claimed, and only while no earlier message of that key is still pending (claimed, or waiting
to be retried). "Oldest" means lowest id; on PostgreSQL ids of one key are allocated in commit
order as long as the writers of one key are serialized, which the conversation row lock does
for the messages of one chat: a turn takes its reply's id under that lock, or, after a read
without it, takes it early but commits only if no other turn of the conversation committed
since its read (why that suffices: `storage.turns`, "Order of a chat's replies").

Several workers drain one topic together: on PostgreSQL the claim locks its rows with
FOR UPDATE SKIP LOCKED, so a concurrent claimer skips them (and, once committed, sees them
leased); on SQLite the single writer serializes claims.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.ports import ChatMessageIds, OutboxMessage, OutboxTopicStats
from storage import chat_messages
from storage.coltypes import as_utc, json_text, sqlite_time
from storage.db import COMMIT_POINT_MARK, Db, in_line_for_a_connection
from storage.errors import storage_errors
from storage.models import outbox

log = logging.getLogger(__name__)
T = TypeVar("T")

PENDING = "pending"
FAILED = "failed"
#: The PostgreSQL channel the outbox trigger (migration 0005) notifies with each new row's
#: topic; not for a Telegram reply, which no dispatcher listens for (migration 0015).
NOTIFY_CHANNEL = "intake_outbox"


_COLUMNS = """id, topic, ordering_key, payload, status, attempts, available_at, created_at,
    claimed_until, last_error, conversation_id, idempotency_key"""
#: The claim, the delivery path's statements and the settles after each send run on the
#: driver's connection, as the turn's own statements do (`storage.turns`): one round trip
#: each on asyncpg, one hand-off to aiosqlite's thread on SQLite (through SQLAlchemy,
#: several, with the single writer held).
#:
#: One statement claims: the oldest pending message of each key (its head: the only one of
#: the key that may be claimed), if it is due and unleased, oldest first, locked so that a
#: concurrent claimer skips it (PostgreSQL; on SQLite the single writer serializes claims),
#: leased and counted as an attempt. The heads are found first, from `ix_outbox_claim`
#: (topic, status, ordering_key, id): the pending entries only, once per claim (PostgreSQL:
#: an InitPlan, whatever the table's statistics say). Written as "no earlier pending message
#: of the key" (an anti-join per pending row), the claim was planned as a walk of the primary
#: key from the first row ever written, delivered ones included; a first form of the heads
#: as a plain IN, on a table not yet analyzed, ran their aggregate again for every pending
#: row (BENCHMARKS.md, "The outbox claim"). The topics go as text[], which asyncpg encodes by
#: itself; varchar[] made every new connection ask the server about the type first
#: (`storage.chat_messages.pg_add`).
PG_CLAIM = f"""
    UPDATE outbox SET attempts = attempts + 1, claimed_until = $3
    WHERE id IN (
        SELECT pick.id FROM outbox AS pick
        WHERE pick.id = ANY (ARRAY(
                SELECT min(head.id) FROM outbox AS head
                WHERE head.topic = ANY ($1::text[]) AND head.status = 'pending'
                GROUP BY head.topic, head.ordering_key))
          -- Again on the row itself, so that PostgreSQL tests the version it locks.
          AND pick.status = 'pending'
          AND pick.available_at <= $2
          AND (pick.claimed_until IS NULL OR pick.claimed_until <= $2)
        ORDER BY pick.id
        LIMIT $4
        FOR UPDATE OF pick SKIP LOCKED)
    RETURNING {_COLUMNS}
"""  # noqa: S608 - constant text
SQLITE_CLAIM = f"""
    UPDATE outbox SET attempts = attempts + 1, claimed_until = ?
    WHERE id IN (
        SELECT pick.id FROM outbox AS pick
        WHERE pick.id IN (
                SELECT min(head.id) FROM outbox AS head
                WHERE head.topic IN ({{topics}}) AND head.status = 'pending'
                GROUP BY head.topic, head.ordering_key)
          AND pick.status = 'pending'
          AND pick.available_at <= ?
          AND (pick.claimed_until IS NULL OR pick.claimed_until <= ?)
        ORDER BY pick.id
        LIMIT ?)
    RETURNING {_COLUMNS}
"""  # noqa: S608 - constant text (`{{topics}}`: one ? per topic)
#: The settles: sent (keeping only the audit payload), to be retried, given up.
PG_DONE = "UPDATE outbox SET status = 'done', claimed_until = NULL, payload = $2 WHERE id = $1"
SQLITE_DONE = "UPDATE outbox SET status = 'done', claimed_until = NULL, payload = ? WHERE id = ?"
#: A delivered message (`PG_DONE`) with the ids the chat gave what was sent ($3..$7:
#: `chat_messages.pg_add_args`), kept only if the update found the row (not erased meanwhile):
#: one statement, committed by itself (`SqlOutbox.settle_done`).
PG_DONE_KEEPING_IDS = f"""
    WITH settled AS (
        {PG_DONE}
        RETURNING id
    ){chat_messages.pg_add(3, source="settled")}"""


@functools.cache
def pg_done_claiming_next(*, keeping_ids: bool) -> str:
    """`PG_DONE` ($1, $2), with the ids kept as `PG_DONE_KEEPING_IDS` does ($3..$7) when
    `keeping_ids`, and the claim of the key's next message (now, then the lease's end: the
    next two parameters) in the same statement, returning it. The settle's snapshot still
    sees the settled message pending, so the key's head once it is done is the lowest pending
    id other than its own; the claim tests that row again as `PG_CLAIM` does (due, unleased).
    Nothing is claimed if the settled row is gone (erased meanwhile). No concurrent claimer
    can hold that row: until this statement commits, every other snapshot still has the
    settled message as the key's head."""
    now, until = ("$8", "$9") if keeping_ids else ("$3", "$4")
    kept = (
        f""",
    kept AS ({chat_messages.pg_add(3, source="settled")})"""
        if keeping_ids
        else ""
    )
    return f"""
    WITH settled AS (
        {PG_DONE}
        RETURNING id, topic, ordering_key
    ){kept},
    claimed AS (
        UPDATE outbox SET attempts = attempts + 1, claimed_until = {until}
        WHERE id = (SELECT min(later.id) FROM outbox AS later, settled
                    WHERE later.topic = settled.topic
                      AND later.ordering_key = settled.ordering_key
                      AND later.status = 'pending' AND later.id <> settled.id)
          AND status = 'pending'
          AND available_at <= {now}
          AND (claimed_until IS NULL OR claimed_until <= {now})
        RETURNING {_COLUMNS})
    SELECT {_COLUMNS} FROM claimed"""  # noqa: S608 - constant text


#: SQLite, after `SQLITE_DONE` in the same hand-off: the settled message's key's next message
#: (its head, now that the settled one is done), if due and unleased (lease end, the settled
#: message's id, now, now).
SQLITE_CLAIM_NEXT = f"""
    UPDATE outbox SET attempts = attempts + 1, claimed_until = ?
    WHERE id = (SELECT min(later.id) FROM outbox AS later JOIN outbox AS settled
                  ON later.topic = settled.topic AND later.ordering_key = settled.ordering_key
                WHERE settled.id = ? AND later.status = 'pending')
      AND status = 'pending'
      AND available_at <= ?
      AND (claimed_until IS NULL OR claimed_until <= ?)
    RETURNING {_COLUMNS}
"""  # noqa: S608 - constant text
PG_RETRY_LATER = """UPDATE outbox SET claimed_until = NULL, available_at = $2, last_error = $3
    WHERE id = $1"""
SQLITE_RETRY_LATER = """UPDATE outbox SET claimed_until = NULL, available_at = ?, last_error = ?
    WHERE id = ?"""
PG_FAILED = """UPDATE outbox SET status = 'failed', claimed_until = NULL, last_error = $2
    WHERE id = $1"""
SQLITE_FAILED = """UPDATE outbox SET status = 'failed', claimed_until = NULL, last_error = ?
    WHERE id = ?"""

#: A message added already claimed by its writer (`add(claim_for=...)`), unless an earlier
#: message of its key is still pending: then it waits its turn like any other. It is written
#: in the turn's transaction, so it runs on the driver's connection as the turn's own
#: statements do (`storage.turns`), in one hand-off to aiosqlite's thread or one round trip;
#: or, joined to the turn's own write, in that write's statement (`pg_add` with a `source`).
_KEY_BUSY = """EXISTS (SELECT 1 FROM outbox AS earlier
                       WHERE earlier.topic = {topic} AND earlier.ordering_key = {key}
                         AND earlier.status = 'pending')"""
_ADD_COLUMNS = """INSERT INTO outbox (idempotency_key, topic, ordering_key, payload,
        status, attempts, available_at, created_at, claimed_until, last_error, conversation_id)"""


@functools.cache
def pg_add(first: int = 1, *, claimed: bool, source: str | None = None) -> str:
    """The insert of one message, its ten parameters numbered from `first` (`pg_add_args`),
    returning its id and attempts. `claimed`: claimed until the eighth parameter, attempts 1,
    unless its key is busy (`_KEY_BUSY`: then attempts 0, unclaimed); otherwise unclaimed,
    for a claim to find. With `source`, a relation of the caller's statement (the turn's
    `saved`: storage.turns), the row is written once per row of it, so not at all if it is
    empty. Joined from this module's literals and the caller's (a CTE's name)."""
    p = [f"${first + n}" for n in range(10)]
    if claimed:
        topic, key = f"{p[1]}::varchar", f"{p[2]}::varchar"
        busy = _KEY_BUSY.format(topic=topic, key=key)
        values = [
            *(p[0], topic, key, p[3], p[4]),
            f"CASE WHEN {busy} THEN 0 ELSE 1 END",
            *(p[5], p[6]),
            f"CASE WHEN {busy} THEN NULL ELSE {p[7]}::timestamptz END",
            *(p[8], p[9]),
        ]
    else:
        values = [*p[:8], "NULL", p[8], p[9]]
    listed = ",\n           ".join(values)
    rows = f"VALUES ({listed})" if source is None else f"SELECT {listed} FROM {source}"  # noqa: S608
    return f"{_ADD_COLUMNS}\n    {rows}\n    RETURNING id, attempts\n"


#: A message added claimed for its writer, or unclaimed (the claim finds it).
PG_ADD_CLAIMED = pg_add(claimed=True)
PG_ADD = pg_add(claimed=False)
SQLITE_ADD_CLAIMED = f"""{_ADD_COLUMNS}
    VALUES (:idempotency_key, :topic, :ordering_key, :payload, :status,
            CASE WHEN {_KEY_BUSY.format(topic=":topic", key=":ordering_key")} THEN 0 ELSE 1 END,
            :available_at, :created_at,
            CASE WHEN {_KEY_BUSY.format(topic=":topic", key=":ordering_key")}
                 THEN NULL ELSE :claim_until END,
            :last_error, :conversation_id)
    RETURNING id, attempts
"""
SQLITE_ADD = f"""{_ADD_COLUMNS}
    VALUES (:idempotency_key, :topic, :ordering_key, :payload, :status, :attempts,
            :available_at, :created_at, NULL, :last_error, :conversation_id)
    RETURNING id, attempts
"""


def added_row(message: OutboxMessage, now: datetime) -> dict[str, Any]:
    """The columns of a message to add (times not given: `now`)."""
    return {
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


def pg_add_args(row: dict[str, Any], until: datetime | None) -> tuple[Any, ...]:
    """The parameters of `pg_add(claimed=until is not None)` for `row`. Values are stored as
    `storage.turns` stores them: JSON as `json_text` (orjson), times aware."""
    head = (
        row["idempotency_key"],
        row["topic"],
        row["ordering_key"],
        json_text(row["payload"]),
        row["status"],
    )
    times = (as_utc(row["available_at"]), as_utc(row["created_at"]))
    tail = (row["last_error"], row["conversation_id"])
    if until is None:
        return (*head, row["attempts"], *times, *tail)
    return (*head, *times, as_utc(until), *tail)


def sqlite_add(
    connection: sqlite3.Connection, row: dict[str, Any], until: datetime | None
) -> tuple[int, int]:
    """Insert `row` on the sqlite3 connection, claimed until `until` (None: unclaimed), as
    `pg_add` does: (id, attempts). Times as SQLite's naive UTC text."""
    parameters = {
        **row,
        "payload": json_text(row["payload"]),
        "available_at": sqlite_time(row["available_at"]),
        "created_at": sqlite_time(row["created_at"]),
    }
    if until is None:
        new_id, attempts = connection.execute(SQLITE_ADD, parameters).fetchone()
    else:
        parameters["claim_until"] = sqlite_time(until)
        new_id, attempts = connection.execute(SQLITE_ADD_CLAIMED, parameters).fetchone()
    return int(new_id), int(attempts)


def added(
    message: OutboxMessage, row: dict[str, Any], inserted: tuple[int, int], *, claimed: bool
) -> bool:
    """Fill in what adding `message` (as `row`, `pg_add`/`sqlite_add` answering `inserted`)
    gave it; True if it was claimed for its writer (asked to be, and its key was free)."""
    message.id = inserted[0]
    message.created_at = row["created_at"]
    message.available_at = row["available_at"]
    if not claimed:
        return False
    message.attempts = inserted[1]
    return message.attempts > 0


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
        until = None if claim_for is None else now + timedelta(seconds=claim_for)
        claimed: builtins.list[OutboxMessage] = []
        for message in messages:
            row = added_row(message, now)
            if added(message, row, await self._add_one(row, until), claimed=until is not None):
                claimed.append(message)
        return claimed

    async def _add_one(self, row: dict[str, Any], until: datetime | None) -> tuple[int, int]:
        """Insert one row, claimed until `until` unless its key is busy (None: unclaimed):
        (id, attempts), in one round trip (PostgreSQL) or one hand-off to aiosqlite's thread
        (`Db.run_sqlite`). Through SQLAlchemy the unclaimed insert was the largest part of a
        Telegram turn's reply whenever the dispatcher had no slot to claim it in."""
        if self._db.is_postgres:
            driver = await self._db.driver()
            with storage_errors():
                inserted = await driver.fetchrow(
                    PG_ADD if until is None else PG_ADD_CLAIMED, *pg_add_args(row, until)
                )
            return int(inserted["id"]), int(inserted["attempts"])
        return await self._db.run_sqlite(lambda connection: sqlite_add(connection, row, until))

    async def _write(
        self,
        statement: str,
        postgres: Callable[[Any, str], Awaitable[T]],
        sqlite: Callable[[sqlite3.Connection], T],
        *,
        commit: bool,
    ) -> T:
        """A write on the driver's connection: `postgres(driver, statement)` or `sqlite(the
        sqlite3 connection)`, in the unit of work's transaction; with `commit`, committed,
        ending the unit of work, in as few steps as the backend allows. PostgreSQL: the
        statement alone outside a transaction, so it commits by itself (`Db.run_committed`,
        marked with `COMMIT_POINT_MARK`): one round trip where BEGIN, the statement and
        COMMIT were three, none of them with a transaction left open between. SQLite: with
        its BEGIN IMMEDIATE and COMMIT in one hand-off to aiosqlite's thread."""
        if self._db.is_postgres:
            if commit:
                return await self._db.run_committed(
                    lambda driver: postgres(driver, COMMIT_POINT_MARK + statement)
                )
            driver = await self._db.driver()
            with storage_errors():
                return await postgres(driver, statement)
        if commit:
            return await self._db.run_sqlite_then_commit(
                lambda connection: (sqlite(connection), True)
            )
        return await self._db.run_sqlite(sqlite)

    async def claim(
        self,
        topic: str | Sequence[str],
        *,
        limit: int,
        lease_seconds: float,
        commit: bool = False,
    ) -> builtins.list[OutboxMessage]:
        """See `bot.ports.Outbox.claim`. With `commit` the claim is a statement of its own:
        an UPDATE ... RETURNING is atomic alone, its rows locked (SKIP LOCKED for a concurrent
        claimer) until it commits."""
        now = self._db.now()
        topics = [topic] if isinstance(topic, str) else list(topic)
        lease_until = now + timedelta(seconds=lease_seconds)
        statement = SQLITE_CLAIM.format(topics=", ".join("?" * len(topics)))
        parameters = (sqlite_time(lease_until), *topics, sqlite_time(now), sqlite_time(now))

        async def pg_claim(driver: Any, text: str) -> builtins.list[OutboxMessage]:
            records = await driver.fetch(text, topics, as_utc(now), as_utc(lease_until), limit)
            return [_message_from(record) for record in records]

        def sqlite_claim(connection: sqlite3.Connection) -> builtins.list[OutboxMessage]:
            return _sqlite_messages(connection.execute(statement, (*parameters, limit)))

        messages = await self._write(PG_CLAIM, pg_claim, sqlite_claim, commit=commit)
        return sorted(messages, key=lambda message: message.id or 0)

    async def mark_done(self, message_id: int, *, keep: dict[str, Any] | None = None) -> None:
        """Sent. With `keep`, the payload becomes that (what an audit needs of it)."""
        if keep is None:
            await self._settle(
                "UPDATE outbox SET status = 'done', claimed_until = NULL WHERE id = $1",
                "UPDATE outbox SET status = 'done', claimed_until = NULL WHERE id = ?",
                (message_id,),
            )
            return
        payload = json_text(keep)
        await self._settle(PG_DONE, SQLITE_DONE, (message_id, payload), (payload, message_id))

    async def settle_done(
        self,
        message_id: int,
        *,
        keep: dict[str, Any],
        sent: ChatMessageIds | None,
        at: datetime,
        claim_next_for: float | None = None,
    ) -> builtins.list[OutboxMessage]:
        """See `bot.ports.Outbox.settle_done`. PostgreSQL: one statement committed by itself
        (`PG_DONE_KEEPING_IDS`, or `PG_DONE` when nothing was sent to keep; with
        `claim_next_for`, `pg_done_claiming_next`); SQLite: one hand-off with its COMMIT."""
        payload = json_text(keep)
        ids = sent if sent is not None and sent.message_ids else None
        if ids is None and claim_next_for is None:
            await self._settle(
                PG_DONE, SQLITE_DONE, (message_id, payload), (payload, message_id), commit=True
            )
            return []
        now = self._db.now()
        until = now + timedelta(seconds=claim_next_for or 0.0)
        kept = chat_messages.pg_add_args(ids, at) if ids is not None else ()

        async def pg_settle(driver: Any, text: str) -> builtins.list[OutboxMessage]:
            if claim_next_for is None:
                await driver.execute(text, message_id, payload, *kept)
                return []
            records = await driver.fetch(
                text, message_id, payload, *kept, as_utc(now), as_utc(until)
            )
            return [_message_from(record) for record in records]

        def sqlite_settle(connection: sqlite3.Connection) -> builtins.list[OutboxMessage]:
            if connection.execute(SQLITE_DONE, (payload, message_id)).rowcount != 1:
                return []
            if ids is not None:
                chat_messages.sqlite_add(connection, ids, at)
            if claim_next_for is None:
                return []
            return _sqlite_messages(
                connection.execute(
                    SQLITE_CLAIM_NEXT,
                    (sqlite_time(until), message_id, sqlite_time(now), sqlite_time(now)),
                )
            )

        statement = (
            PG_DONE_KEEPING_IDS
            if claim_next_for is None
            else pg_done_claiming_next(keeping_ids=ids is not None)
        )
        return await self._write(statement, pg_settle, sqlite_settle, commit=True)

    async def retry_later(
        self, message_id: int, *, delay_seconds: float, error: str, commit: bool = False
    ) -> None:
        """Still pending, so later messages of the key keep waiting behind it."""
        available_at = self._db.now() + timedelta(seconds=delay_seconds)
        await self._settle(
            PG_RETRY_LATER,
            SQLITE_RETRY_LATER,
            (message_id, as_utc(available_at), error),
            (sqlite_time(available_at), error, message_id),
            commit=commit,
        )

    async def mark_failed(self, message_id: int, *, error: str, commit: bool = False) -> None:
        """Given up: no longer pending, so the key's later messages flow again."""
        await self._settle(
            PG_FAILED, SQLITE_FAILED, (message_id, error), (error, message_id), commit=commit
        )

    async def _settle(
        self,
        postgres: str,
        sqlite: str,
        pg_parameters: tuple[Any, ...],
        sqlite_parameters: tuple[Any, ...] | None = None,
        *,
        commit: bool = False,
    ) -> None:
        """One UPDATE of a settle on the driver's connection (`_write`)."""
        parameters = pg_parameters if sqlite_parameters is None else sqlite_parameters

        async def pg_update(driver: Any, text: str) -> None:
            await driver.execute(text, *pg_parameters)

        def sqlite_update(connection: sqlite3.Connection) -> None:
            connection.execute(sqlite, parameters)

        await self._write(postgres, pg_update, sqlite_update, commit=commit)

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


def _message_from(row: Any) -> OutboxMessage:
    """A message from a row read on asyncpg (its JSON decoded by the codec SQLAlchemy's
    dialect sets on each connection; times aware, in UTC)."""
    return OutboxMessage(
        topic=row["topic"],
        ordering_key=row["ordering_key"],
        payload=row["payload"],
        id=row["id"],
        created_at=_aware(row["created_at"]),
        attempts=row["attempts"],
        available_at=_aware(row["available_at"]),
        status=row["status"],
        last_error=row["last_error"],
        idempotency_key=row["idempotency_key"],
        conversation_id=row["conversation_id"],
    )


def _sqlite_messages(cursor: sqlite3.Cursor) -> builtins.list[OutboxMessage]:
    """The messages a sqlite3 statement returned (`_COLUMNS`, by name)."""
    names = [column[0] for column in cursor.description]
    return [_sqlite_message(dict(zip(names, row, strict=True))) for row in cursor]


def _sqlite_message(row: dict[str, Any]) -> OutboxMessage:
    """A message from a row read on sqlite3: JSON text and naive UTC text, read back as
    SQLAlchemy's types read them."""
    payload = row["payload"]
    return _message_from(
        {**row, "payload": json.loads(payload) if isinstance(payload, str) else payload}
    )


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
    """Call `wake(topic)` whenever any process commits a new outbox row (PostgreSQL NOTIFY),
    except a Telegram reply, which no dispatcher listens for (migration 0015).

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
            async with in_line_for_a_connection(engine), engine.connect() as connection:
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
