"""`bot.ports.ChatMessages` over SQLAlchemy: a chat's message ids, for the quick exit.

`add` runs in every settle of a sent reply, so it goes on the driver's connection as the
turn's own statements do (`storage.turns`): one statement on asyncpg, one hand-off to
aiosqlite's thread on SQLite (through SQLAlchemy it was several, with the single writer held).
A Telegram turn's own message id goes with the turn's write (`pg_add` joined to it,
`sqlite_add` in its hand-off). Values are stored as SQLAlchemy's types store them.
"""

from __future__ import annotations

import builtins
import sqlite3
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from bot.ports import Channel, ChatMessageIds
from storage.coltypes import as_utc, sqlite_time
from storage.db import Db
from storage.errors import storage_errors
from storage.models import chat_messages
from storage.repositories import among


def pg_add(first: int = 1, *, source: str | None = None) -> str:
    """The insert of one chat's message ids, its five parameters numbered from `first`
    (`pg_add_args`; the ids in order: the exit deletes them in the order kept). With
    `source`, a relation of the caller's statement (the turn's `saved`: storage.turns), the
    ids are written once per row of it, so not at all if it is empty. Joined from this
    module's literals and the caller's (a CTE's name).

    The ids go as text[], cast back to bigint here: text[] is one of the two array types
    asyncpg encodes without asking the server, where bigint[] made every new connection
    look the type up (three round trips and a heavy catalog query), which stalled a fresh
    server opening its connections under load (BENCHMARKS.md, "A fresh server's first seconds")."""
    channel, key, ids, conversation, at = (f"${first + n}" for n in range(5))
    joined = "" if source is None else f"{source}, "
    return f"""
    INSERT INTO chat_messages (channel, channel_key, message_id, conversation_id, created_at)
    SELECT {channel}, {key}, ids.message_id::bigint, {conversation}, {at}
    FROM {joined}unnest({ids}::text[]) WITH ORDINALITY AS ids(message_id, n)
    ORDER BY ids.n
"""  # noqa: S608


PG_ADD = pg_add()
SQLITE_ADD = """
    INSERT INTO chat_messages (channel, channel_key, message_id, conversation_id, created_at)
    VALUES (?, ?, ?, ?, ?)
"""


def pg_add_args(ids: ChatMessageIds, at: datetime) -> tuple[Any, ...]:
    """The parameters of `pg_add`: the ids as text (see `pg_add`), times as `UTCDateTime`
    binds them (naive taken as UTC)."""
    return (
        ids.channel,
        ids.channel_key,
        [str(message_id) for message_id in ids.message_ids],
        ids.conversation_id,
        as_utc(at),
    )


def sqlite_add(connection: sqlite3.Connection, ids: ChatMessageIds, at: datetime) -> None:
    """Insert the ids on the sqlite3 connection, in order, times as SQLite's naive UTC text."""
    created_at = sqlite_time(at)
    connection.executemany(
        SQLITE_ADD,
        [
            (ids.channel, ids.channel_key, message_id, ids.conversation_id, created_at)
            for message_id in ids.message_ids
        ],
    )


class SqlChatMessages:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, ids: ChatMessageIds, *, at: datetime) -> None:
        if not ids.message_ids:
            return
        if self._db.is_postgres:
            driver = await self._db.driver()
            with storage_errors():
                await driver.execute(PG_ADD, *pg_add_args(ids, at))
            return
        await self._db.run_sqlite(lambda connection: sqlite_add(connection, ids, at))

    async def take(self, channel: Channel, channel_key: str) -> builtins.list[int]:
        where = (chat_messages.c.channel == channel, chat_messages.c.channel_key == channel_key)
        result = await self._db.execute(
            select(chat_messages.c.id, chat_messages.c.message_id)
            .where(*where)
            .order_by(chat_messages.c.id)
        )
        rows = result.all()
        if rows:
            # Only the rows read: one a delivery records meanwhile stays for the next exit.
            last = rows[-1].id
            await self._db.execute(delete(chat_messages).where(*where, chat_messages.c.id <= last))
        return [int(row.message_id) for row in rows]

    async def purge(self, before: datetime, *, limit: int) -> int:
        """The ids due are found by `ix_chat_messages_created_at`, then each row by its key
        (`storage.repositories.among`), so only due rows are read."""
        batch = (
            select(chat_messages.c.id)
            .where(chat_messages.c.created_at < before)
            .order_by(chat_messages.c.id)
            .limit(limit)
        )
        statement = delete(chat_messages).where(
            among(chat_messages.c.id, batch, postgres=self._db.is_postgres)
        )
        result = await self._db.execute(statement)
        return int(result.rowcount)
