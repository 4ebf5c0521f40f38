"""The summary as rows, and changing one answer straight from it (by its step id, or by typing
"change N" in the person's language), with the answer as it is now quoted and carried."""

from __future__ import annotations

import dataclasses

import pytest

from bot.engine.commands import parse_change
from bot.engine.dialog import Dialog
from bot.engine.engine import Engine
from bot.engine.needs import FixedNeeds
from bot.engine.types import ConversationState, Inbound, Outbound, Turn
from bot.i18n import Catalogs
from dialogs.intake import INTAKE

ACCOUNT = "They left <b>my mum</b> alone\nfor hours."
#: Poor care at a care home: when skipped, the part of the service typed, no contact.
TO_SUMMARY = [
    ("choice", "start"),
    ("choice", "poor"),
    ("choice", "care_home"),
    ("text", "Qwxz House, Leeds"),
    ("choice", "friend_family"),
    ("choice", "skip"),
    ("text", "Ward 3"),
    ("text", ACCOUNT),
    ("choice", "yes"),
    ("choice", "no"),
    ("choice", "neither"),
    ("choice", "not_yet"),
    ("choice", "continue"),
    ("choice", "no"),
    ("choice", "no"),
]


@pytest.fixture(scope="module")
def catalogs() -> Catalogs:
    return Catalogs(globals_={"privacy_url": "https://example.org/privacy"})


def run(
    engine: Engine, catalogs: Catalogs, steps: list[tuple[str, str]], locale: str = "en"
) -> Turn:
    state = engine.start(locale).state
    turn = Turn(state, ())
    for kind, value in steps:
        turn = engine.handle(
            turn.state,
            Inbound(kind, value),  # type: ignore[arg-type]
            catalogs.translator(locale),
            FixedNeeds(),
        )
    return turn


def send(
    engine: Engine, catalogs: Catalogs, state: ConversationState, kind: str, value: str
) -> Turn:
    return engine.handle(
        state,
        Inbound(kind, value),  # type: ignore[arg-type]
        catalogs.translator(state.locale),
        FixedNeeds(),
    )


def summary_message(turn: Turn) -> Outbound:
    carrying = [o for o in turn.outbound if o.summary]
    assert len(carrying) == 1, turn.outbound
    return carrying[0]


def rows(turn: Turn, catalogs: Catalogs, locale: str = "en") -> list[tuple[str, str, str, bool]]:
    return [
        (r.step, catalogs.render(r.label, locale), catalogs.render(r.value, locale), r.changeable)
        for r in summary_message(turn).summary
    ]


def test_the_summary_carries_one_row_per_answer_on_the_path(catalogs: Catalogs) -> None:
    engine = Engine(INTAKE)
    turn = run(engine, catalogs, TO_SUMMARY)
    assert turn.step == "summary"
    assert rows(turn, catalogs) == [
        ("experience", "Kind of experience", "Poor", True),
        ("service_type", "Type of service", "Care home", True),
        ("provider", "Service", "Qwxz House, Leeds", True),
        ("relationship", "How you know", "It was a friend's or relative's care", True),
        ("when", "When", "Not given", True),  # skipped: said plainly
        ("service_part", "Part of the service", "Ward 3", True),
        ("what_happened", "What happened", ACCOUNT, True),  # as typed, never interpreted
        ("share_with_service", "Share with the service", "Yes", True),
        ("risk", "Someone at risk now", "No", True),
        ("authorities", "Told the police or council", "Neither", True),
        ("complaint", "Told the service", "Not yet", True),
        ("contact", "May we contact you", "No", True),
        ("referral", "Suggested by an organisation", "No", True),
    ]
    # The rows are on the message that carries the summary's choices; its text says the same
    # as numbered lines, for channels that show text only, then how to change one.
    message = summary_message(turn)
    assert message is turn.outbound[-1] and [c.id for c in message.choices] == [
        "submit",
        "edit",
        "restart",
    ]
    text = catalogs.render(message.text, "en")
    assert text.startswith("1. Kind of experience: Poor\n2. Type of service: Care home\n")
    assert "5. When: Not given\n" in text and f"7. What happened: {ACCOUNT}\n" in text
    assert text.endswith("To change an answer, type change and its number, like this: change 1")
    # The intro is its own message before it.
    assert catalogs.render(turn.outbound[-2].text, "en").startswith("Here are your answers.")


def test_rows_follow_the_path_only(catalogs: Catalogs) -> None:
    """Answers left behind by a change (good care asks no "when") are not shown."""
    engine = Engine(INTAKE)
    turn = run(engine, catalogs, [*TO_SUMMARY, ("choice", "experience"), ("choice", "good")])
    assert turn.step == "summary"
    steps = [row[0] for row in rows(turn, catalogs)]
    assert steps[0] == "experience" and rows(turn, catalogs)[0][2] == "Good"
    assert not {"when", "service_part", "risk", "authorities", "complaint"} & set(steps)
    assert "what_happened" in steps


def test_a_rows_step_id_as_a_choice_goes_straight_to_that_question(catalogs: Catalogs) -> None:
    engine = Engine(INTAKE)
    at_summary = run(engine, catalogs, TO_SUMMARY).state
    turn = send(engine, catalogs, at_summary, "choice", "what_happened")
    assert turn.step == "what_happened" and turn.state.editing
    assert turn.echo is not None and catalogs.render(turn.echo, "en") == "What happened"
    last = turn.outbound[-1]
    assert last.input == "text" and last.value == ACCOUNT  # for the widget's box
    assert catalogs.render(last.text, "en") == f"Your answer now: {ACCOUNT}"  # quoted
    # The new answer brings the person back to the summary, with the rest kept.
    back = send(engine, catalogs, turn.state, "text", "They left my mum alone.")
    assert back.step == "summary"
    assert ("what_happened", "What happened", "They left my mum alone.", True) in rows(
        back, catalogs
    )
    assert ("service_part", "Part of the service", "Ward 3", True) in rows(back, catalogs)


def test_a_lookup_being_changed_carries_what_was_typed(catalogs: Catalogs) -> None:
    engine = Engine(INTAKE)
    at_summary = run(engine, catalogs, TO_SUMMARY).state
    turn = send(engine, catalogs, at_summary, "choice", "provider")
    assert turn.step == "provider" and turn.outbound[-1].value == "Qwxz House, Leeds"


def test_nothing_is_carried_for_a_choice_or_a_skipped_answer(catalogs: Catalogs) -> None:
    engine = Engine(INTAKE)
    at_summary = run(engine, catalogs, TO_SUMMARY).state
    skipped = send(engine, catalogs, at_summary, "choice", "when")
    assert skipped.step == "when" and skipped.outbound[-1].value is None
    assert not any("Your answer now" in catalogs.render(o.text, "en") for o in skipped.outbound)
    choice = send(engine, catalogs, at_summary, "choice", "risk")
    assert choice.step == "risk" and all(o.value is None for o in choice.outbound)
    # Outside a change, a question never carries a value.
    assert all(o.value is None for o in run(engine, catalogs, TO_SUMMARY[:7]).outbound)


def test_the_edit_flow_still_works_and_carries_the_value_too(catalogs: Catalogs) -> None:
    engine = Engine(INTAKE)
    turn = run(engine, catalogs, [*TO_SUMMARY, ("choice", "edit"), ("choice", "service_part")])
    assert turn.step == "service_part" and turn.outbound[-1].value == "Ward 3"


@pytest.mark.parametrize(
    ("locale", "typed"),
    [
        ("en", "change 7"),
        ("en", "/change 7"),
        ("en", " Change 7. "),
        ("pl", "Zmień 7"),
        ("ar", "غير ٧"),
    ],
)
def test_change_n_typed_goes_to_that_row(catalogs: Catalogs, locale: str, typed: str) -> None:
    engine = Engine(INTAKE)
    turn = run(engine, catalogs, TO_SUMMARY, locale)
    turn = send(engine, catalogs, turn.state, "text", typed)
    assert turn.step == "what_happened" and turn.outbound[-1].value == ACCOUNT


def test_change_with_a_number_that_is_no_row_reprompts(catalogs: Catalogs) -> None:
    engine = Engine(INTAKE)
    at_summary = run(engine, catalogs, TO_SUMMARY).state
    for typed in ("change 14", "change 0"):
        turn = send(engine, catalogs, at_summary, "text", typed)
        assert turn.step == "summary" and not turn.state.editing
        assert catalogs.render(turn.outbound[0].text, "en").startswith("Sorry, I did not")


def test_change_n_elsewhere_is_an_answer_or_an_unknown_command(catalogs: Catalogs) -> None:
    engine = Engine(INTAKE)
    at_when = run(engine, catalogs, TO_SUMMARY[:5])
    assert at_when.step == "when"
    slashed = send(engine, catalogs, at_when.state, "text", "/change 2")
    assert slashed.step == "when"
    assert catalogs.render(slashed.outbound[0].text, "en").startswith("I don't know that command")
    typed = send(engine, catalogs, at_when.state, "text", "change 2")
    assert typed.step == "service_part" and typed.state.answers["when"] == "change 2"


def test_a_stale_id_at_the_summary_is_still_a_stale_button(catalogs: Catalogs) -> None:
    engine = Engine(INTAKE)
    at_summary = run(engine, catalogs, TO_SUMMARY).state
    for value in ("mha", "contact_name", "welcome", "nonsense"):  # not rows on this path
        turn = send(engine, catalogs, at_summary, "choice", value)
        assert turn.step == "summary", value
        assert catalogs.render(turn.outbound[0].text, "en").startswith("That button was")


def test_a_step_the_dialogue_marks_unchangeable_has_no_way_to_change_it(
    catalogs: Catalogs,
) -> None:
    steps = tuple(
        dataclasses.replace(s, changeable=False) if s.id == "service_type" else s
        for s in INTAKE.steps
    )
    engine = Engine(
        Dialog(
            **{
                **{f.name: getattr(INTAKE, f.name) for f in dataclasses.fields(Dialog)},
                "steps": steps,
            }
        )
    )
    turn = run(engine, catalogs, TO_SUMMARY)
    assert ("service_type", "Type of service", "Care home", False) in rows(turn, catalogs)
    state = turn.state
    assert send(engine, catalogs, state, "choice", "service_type").step == "summary"
    assert send(engine, catalogs, state, "text", "change 2").step == "summary"
    assert send(engine, catalogs, state, "text", "change 3").step == "provider"
    edit = send(engine, catalogs, state, "choice", "edit")
    assert "service_type" not in [c.id for c in edit.outbound[-1].choices]
    assert "provider" in [c.id for c in edit.outbound[-1].choices]


@pytest.mark.parametrize(
    ("typed", "number"),
    [
        ("change 3", 3),
        ("/change 3", 3),
        ("CHANGE3", 3),
        ("zmień 4", 4),
        ("change", None),
        ("change me 3", None),
        ("3", None),
        ("please change 3 now", None),
    ],
)
def test_parse_change(typed: str, number: int | None) -> None:
    assert parse_change(typed, "zmień") == number
