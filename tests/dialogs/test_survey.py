"""A second dialogue runs on the same, untouched engine: the engine knows step kinds only."""

from __future__ import annotations

import pytest

from bot.engine.engine import Engine
from bot.engine.needs import FixedNeeds
from bot.engine.types import ConversationClosed, Inbound, ReportSubmitted, Turn
from bot.i18n import Catalogs
from dialogs import survey
from dialogs.intake import INTAKE
from dialogs.survey import SURVEY


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(SURVEY)


@pytest.fixture(scope="module")
def render():  # type: ignore[no-untyped-def]
    return Catalogs(globals_={"privacy_url": "https://example.org/privacy"}).translator("en")


def _run(engine: Engine, render, needs: FixedNeeds, *inputs: tuple[str, str]) -> list[Turn]:  # type: ignore[no-untyped-def]
    turns = [engine.start("en")]
    for kind, value in inputs:
        turns.append(engine.handle(turns[-1].state, Inbound(kind, value), render, needs))  # type: ignore[arg-type]
    return turns


def test_the_survey_shares_no_step_id_with_the_intake() -> None:
    # So a run through it proves the engine names no intake step.
    assert not {s.id for s in SURVEY.steps} & {s.id for s in INTAKE.steps}


def test_poor_care_asks_for_a_comment_then_submits(engine: Engine, render) -> None:  # type: ignore[no-untyped-def]
    needs = FixedNeeds(reference="SURV-2345")
    turns = _run(
        engine,
        render,
        needs,
        ("choice", "poor"),
        ("text", "Nobody answered the bell."),
        ("choice", "send"),
    )
    assert [t.state.step for t in turns] == ["rating", "comment", "check", "thanks"]
    summary = render(turns[2].outbound[-1].text)
    assert "Nobody answered the bell." in summary and "Poor" in summary
    last = turns[-1]
    assert last.state.status == "submitted" and last.state.reference == "SURV-2345"
    (event,) = last.events
    assert isinstance(event, ReportSubmitted)
    assert event.report == {
        "rating": "poor",
        "comment": "Nobody answered the bell.",
        "reference": "SURV-2345",
        "locale": "en",
    }
    assert "SURV-2345" in render(last.outbound[0].text)
    assert needs.searched == []  # no lookup step: the directory is never asked


def test_good_care_goes_straight_to_the_check_and_can_edit(engine: Engine, render) -> None:  # type: ignore[no-untyped-def]
    turns = _run(
        engine,
        render,
        FixedNeeds(),
        ("choice", "good"),
        ("choice", "change"),
        ("choice", "rating"),
        ("choice", "mixed"),
        ("choice", "skip"),
    )
    assert [t.state.step for t in turns] == [
        "rating",
        "check",
        "change_answer",
        "rating",
        "comment",
        "check",
    ]


def test_commands_use_the_survey_own_steps(engine: Engine, render) -> None:  # type: ignore[no-untyped-def]
    at_rating = engine.start("en").state
    # No language step in this dialogue: the question is asked again.
    assert engine.handle(at_rating, Inbound("command", "language"), render).state.step == "rating"
    cancelled = engine.handle(at_rating, Inbound("text", "/cancel"), render)
    assert cancelled.state.step == survey.STOPPED and cancelled.state.status == "cancelled"
    assert cancelled.events == (ConversationClosed("cancelled"),)
