"""The survey about the chat: a second dialogue on the same, generic engine."""

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
    # The service tells which dialogue a conversation runs by its step; and a run through
    # the survey proves the engine names no intake step.
    assert not {s.id for s in SURVEY.steps} & {s.id for s in INTAKE.steps}


def test_three_numbered_questions_then_the_last_answer_submits(engine: Engine, render) -> None:  # type: ignore[no-untyped-def]
    needs = FixedNeeds()
    turns = _run(
        engine,
        render,
        needs,
        ("choice", "easy"),
        ("choice", "partly"),
        ("text", "Bigger buttons."),
    )
    assert [t.state.step for t in turns] == [
        survey.EASE,
        survey.SAID_ALL,
        survey.IMPROVE,
        survey.THANKS,
    ]
    for n, turn in enumerate(turns[:3], start=1):
        assert render(turn.outbound[-1].text).startswith(f"Question {n} of 3\n")
    assert [c.id for c in turns[0].outbound[-1].choices] == [
        "very_easy",
        "easy",
        "neither",
        "difficult",
        "very_difficult",
    ]
    assert "personal details" in render(turns[2].outbound[-1].text)
    assert [c.id for c in turns[2].outbound[-1].choices] == ["skip"]
    last = turns[-1]
    assert last.state.status == "submitted"
    (event,) = last.events
    assert isinstance(event, ReportSubmitted)
    # No reference number: the answers are anonymous and cannot be quoted back.
    assert event.report == {
        "survey_ease": "easy",
        "survey_said_all": "partly",
        "survey_improve": "Bigger buttons.",
        "locale": "en",
    }
    assert last.state.reference is None
    assert "saved your answers" in render(last.outbound[-1].text)


def test_the_suggestion_may_be_skipped_and_is_bounded(engine: Engine, render) -> None:  # type: ignore[no-untyped-def]
    turns = _run(engine, render, FixedNeeds(), ("choice", "difficult"), ("choice", "no"))
    too_long = engine.handle(turns[-1].state, Inbound("text", "x" * 1001), render)
    assert too_long.state.step == survey.IMPROVE and not too_long.events
    skipped = engine.handle(turns[-1].state, Inbound("choice", "skip"), render)
    (event,) = skipped.events
    assert isinstance(event, ReportSubmitted)
    assert event.report["survey_improve"] is None


def test_cancel_stops_the_survey_and_keeps_nothing(engine: Engine, render) -> None:  # type: ignore[no-untyped-def]
    at_ease = engine.start("en").state
    answered = engine.handle(at_ease, Inbound("choice", "easy"), render).state
    cancelled = engine.handle(answered, Inbound("text", "/cancel"), render)
    assert cancelled.state.step == survey.STOPPED and cancelled.state.status == "cancelled"
    assert cancelled.state.answers == {}
    assert cancelled.events == (ConversationClosed("cancelled"),)
    assert "stopped the survey" in render(cancelled.outbound[0].text)
    # No language step in this dialogue: the question is asked again.
    assert engine.handle(at_ease, Inbound("command", "language"), render).state.step == (
        survey.EASE
    )


def test_an_unnumbered_dialogue_is_not_numbered(render) -> None:  # type: ignore[no-untyped-def]
    # `numbered` is the dialogue's choice: the intake's questions carry no counter.
    intake = Engine(INTAKE)
    assert not render(intake.start("en").outbound[-1].text).startswith("Question")
