"""The survey port over every backend (memory, SQLite, PostgreSQL): stored apart, anonymous."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import inspect

from bot.ports import ChatSurvey, Storage
from storage.models import chat_surveys


@pytest.fixture
def storage(any_storage: Storage) -> Storage:
    return any_storage


def _survey(day: date, ease: str = "easy", improve: str | None = None) -> ChatSurvey:
    return ChatSurvey(
        day=day,
        channel="web",
        locale="cy",
        answers={"survey_ease": ease, "survey_said_all": "yes", "survey_improve": improve},
    )


async def test_surveys_round_trip_oldest_first_and_purge_by_day(storage: Storage) -> None:
    async with storage.unit_of_work() as uow:
        await uow.surveys.add(_survey(date(2026, 11, 2), "difficult", "Bigger text"))
        await uow.surveys.add(_survey(date(2026, 10, 1)))
        await uow.surveys.add(_survey(date(2026, 12, 1), "very_easy"))
        await uow.commit()
    async with storage.unit_of_work() as uow:
        listed = await uow.surveys.list()
        since = await uow.surveys.list(since=date(2026, 11, 2))
    assert [s.day for s in listed] == [date(2026, 10, 1), date(2026, 11, 2), date(2026, 12, 1)]
    assert listed[1] == _survey(date(2026, 11, 2), "difficult", "Bigger text")
    assert [s.answers["survey_ease"] for s in since] == ["difficult", "very_easy"]

    async with storage.unit_of_work() as uow:
        assert await uow.surveys.purge(date(2026, 11, 2)) == 1
        await uow.commit()
    async with storage.unit_of_work() as uow:
        assert [s.day for s in await uow.surveys.list()] == [date(2026, 11, 2), date(2026, 12, 1)]


async def test_a_survey_not_committed_is_not_kept(storage: Storage) -> None:
    async with storage.unit_of_work() as uow:
        await uow.surveys.add(_survey(date(2026, 12, 1)))
    async with storage.unit_of_work() as uow:
        assert await uow.surveys.list() == []


def test_the_survey_table_has_no_link_to_a_report_a_conversation_or_a_person() -> None:
    # Anonymity by construction: a day (no time), a channel, a language and the answers.
    assert {c.name for c in chat_surveys.columns} == {"id", "day", "channel", "locale", "answers"}
    assert not chat_surveys.foreign_keys
    assert str(inspect(chat_surveys).c.day.type) == "DATE"
