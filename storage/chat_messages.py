"""`bot.ports.ChatMessages` over SQLAlchemy: a chat's message ids, for the quick exit.

`add` runs in every Telegram turn (the person's message) and every settle of a sent reply,
so it goes on the driver's connection as the turn's own statements do (`storage.turns`): one
statement on asyncpg, one hand-off to aiosqlite's thread on SQLite (through SQLAlchemy it was
several, with the single writer held). Values are stored as SQLAlchemy's types store them.
"""

from __future__ import annotations

import builtins
import sqlite3
from datetime import UTC, datetime

from sqlalchemy import delete, select

from bot.ports import Channel, ChatMessageIds
from storage.db import Db
from storage.errors import storage_errors
from storage.models import chat_messages
from storage.turns import sqlite_time

#: The ids ($3, in order: the exit deletes them in the order kept) of one chat's messages.
PG_ADD = """
    INSERT INTO chat_messages (channel, channel_key, message_id, conversation_id, created_at)
    SELECT $1, $2, ids.message_id, $4, $5
    FROM unnest($3::bigint[]) WITH ORDINALITY AS ids(message_id, n)
    ORDER BY ids.n
"""
SQLITE_ADD = """
    INSERT INTO chat_messages (channel, channel_key, message_id, conversation_id, created_at)
    VALUES (?, ?, ?, ?, ?)
"""


class SqlChatMessages:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, ids: ChatMessageIds, *, at: datetime) -> None:
        if not ids.message_ids:
            return
        if self._db.is_postgres:
            driver = await self._db.driver()
            with storage_errors():
                await driver.execute(
                    PG_ADD,
                    ids.channel,
                    ids.channel_key,
                    list(ids.message_ids),
                    ids.conversation_id,
                    # As `UTCDateTime` binds it: naive taken as UTC.
                    at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC),
                )
            return
        created_at = sqlite_time(at)
        rows = [
            (ids.channel, ids.channel_key, message_id, ids.conversation_id, created_at)
            for message_id in ids.message_ids
        ]

        def insert_rows(connection: sqlite3.Connection) -> None:
            connection.executemany(SQLITE_ADD, rows)

        await self._db.run_sqlite(insert_rows)

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
        batch = (
            select(chat_messages.c.id)
            .where(chat_messages.c.created_at < before)
            .order_by(chat_messages.c.id)
            .limit(limit)
        )
        result = await self._db.execute(delete(chat_messages).where(chat_messages.c.id.in_(batch)))
        return int(result.rowcount)
