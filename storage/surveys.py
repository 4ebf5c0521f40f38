"""The survey about the chat: anonymous answers, apart from the reports."""

from __future__ import annotations

import builtins
from datetime import date

from sqlalchemy import delete, insert, select

from bot.ports import ChatSurvey
from storage.db import Db
from storage.models import chat_surveys


class SqlChatSurveys:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, survey: ChatSurvey) -> None:
        await self._db.execute(
            insert(chat_surveys).values(
                day=survey.day,
                channel=survey.channel,
                locale=survey.locale,
                answers=dict(survey.answers),
            )
        )

    async def list(self, *, since: date | None = None) -> builtins.list[ChatSurvey]:
        statement = select(chat_surveys).order_by(chat_surveys.c.day, chat_surveys.c.id)
        if since is not None:
            statement = statement.where(chat_surveys.c.day >= since)
        rows = (await self._db.execute(statement)).all()
        return [ChatSurvey(row.day, row.channel, row.locale, dict(row.answers)) for row in rows]

    async def purge(self, before: date) -> int:
        result = await self._db.execute(delete(chat_surveys).where(chat_surveys.c.day < before))
        return int(result.rowcount or 0)
