"""`bot.ports.ChatMessages` over SQLAlchemy: a chat's message ids, for the quick exit."""

from __future__ import annotations

import builtins
from datetime import datetime

from sqlalchemy import delete, insert, select

from bot.ports import Channel, ChatMessageIds
from storage.db import Db
from storage.models import chat_messages


class SqlChatMessages:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, ids: ChatMessageIds, *, at: datetime) -> None:
        if not ids.message_ids:
            return
        rows = [
            {
                "channel": ids.channel,
                "channel_key": ids.channel_key,
                "message_id": message_id,
                "conversation_id": ids.conversation_id,
                "created_at": at,
            }
            for message_id in ids.message_ids
        ]
        await self._db.execute(insert(chat_messages), rows)

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
