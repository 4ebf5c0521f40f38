"""`intake survey results` and `intake survey purge`, as an operator runs them."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from bot.app import build_service
from bot.config import Settings
from bot.ports import ChatSurvey
from tests.cli.test_cli import intake


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/cli.sqlite3"


async def _store(db_url: str, *surveys: ChatSurvey) -> None:
    service = await build_service(Settings(database_url=db_url))
    try:
        async with service.storage.unit_of_work() as uow:
            for survey in surveys:
                await uow.surveys.add(survey)
            await uow.commit()
    finally:
        await service.storage.close()


def _survey(day: date, ease: str, said_all: str | None, improve: str | None) -> ChatSurvey:
    return ChatSurvey(
        day,
        "web",
        "en",
        {"survey_ease": ease, "survey_said_all": said_all, "survey_improve": improve},
    )


async def test_results_count_each_answer_and_list_suggestions_only_when_asked(
    db_url: str,
) -> None:
    today = date.today()
    await _store(
        db_url,
        _survey(today, "easy", "yes", None),
        _survey(today, "easy", "partly", "Bigger\nbuttons"),
        _survey(today - timedelta(days=400), "very_difficult", "no", "Too long"),
    )
    result = intake(db_url, "survey", "results")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("3 surveys answered")
    lines = [line.split() for line in out.splitlines()]
    assert ["easy", "2"] in lines and ["very_difficult", "1"] in lines
    assert ["neither", "0"] in lines  # every answer is listed, none given included
    assert ["partly", "1"] in lines
    assert "survey_improve: 2 suggestions typed" in out
    assert "Bigger" not in out and "(list them with --comments)" in out
    listed = intake(db_url, "survey", "results", "--comments").stdout
    assert "  - Bigger buttons" in listed and "  - Too long" in listed
    since = intake(db_url, "survey", "results", "--since", today.isoformat()).stdout
    assert since.startswith("2 surveys answered")

    purged = intake(db_url, "survey", "purge", "--older-than-days", "365")
    assert purged.returncode == 0, purged.stderr
    assert "deleted 1 survey answers older than 365 days" in purged.stdout
    assert intake(db_url, "survey", "results").stdout.startswith("2 surveys answered")
    assert intake(db_url, "survey", "purge", "--older-than-days", "0").returncode == 2


def test_results_with_nothing_stored(db_url: str) -> None:
    result = intake(db_url, "survey", "results")
    assert result.returncode == 0 and result.stdout == "no survey answers stored\n"
