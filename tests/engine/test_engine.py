"""The engine on its own: purity, persistence of state, limits, commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.engine import engine as engine_module
from bot.engine.engine import MAX_HISTORY, Engine, clean_text
from bot.engine.needs import FixedNeeds
from bot.engine.types import COMMANDS, ChoiceDef, ConversationState, Inbound, LocaleChanged, Text
from bot.i18n import Catalogs
from dialogs.diagram import mermaid
from dialogs.intake import INTAKE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(INTAKE)


@pytest.fixture(scope="module")
def render():  # type: ignore[no-untyped-def]
    catalogs = Catalogs(
        globals_={"privacy_url": "https://example.org/privacy", "contact_phone": "03000 616161"}
    )
    return catalogs.translator("en")


def drive(engine: Engine, render, *inputs: tuple[str, str]) -> ConversationState:  # type: ignore[no-untyped-def]
    state = engine.start("en").state
    for kind, value in inputs:
        state = engine.handle(state, Inbound(kind, value), render, FixedNeeds()).state  # type: ignore[arg-type]
    return state


def test_one_machine_is_shared_by_every_conversation(engine: Engine, render, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    built: list[object] = []
    original = engine_module.Machine.__init__

    def counting_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(engine_module.Machine, "__init__", counting_init)
    for _ in range(20):
        drive(engine, render, ("choice", "start"), ("choice", "poor"), ("choice", "hospital"))
    assert built == []


def test_state_survives_a_json_round_trip_between_turns(engine: Engine, render) -> None:  # type: ignore[no-untyped-def]
    state = engine.start("en").state
    for kind, value in [
        ("choice", "start"),
        ("choice", "poor"),
        ("choice", "gp"),
        ("text", "Qwxz Zzyq"),
    ]:
        stored = json.loads(json.dumps(state.to_json()))
        state = ConversationState.from_json(stored)
        state = engine.handle(state, Inbound(kind, value), render, FixedNeeds()).state  # type: ignore[arg-type]
    assert state.step == "relationship"
    assert state.answers["provider"] == {"text": "Qwxz Zzyq", "location_id": None, "name": None}


def test_handle_does_not_mutate_the_state_it_was_given(engine: Engine, render) -> None:  # type: ignore[no-untyped-def]
    state = drive(engine, render, ("choice", "start"))
    before = json.dumps(state.to_json(), sort_keys=True)
    engine.handle(state, Inbound("choice", "poor"), render)
    assert json.dumps(state.to_json(), sort_keys=True) == before


def test_text_over_the_step_limit_is_refused_with_the_numbers(engine: Engine, render) -> None:  # type: ignore[no-untyped-def]
    state = drive(
        engine,
        render,
        ("choice", "start"),
        ("choice", "poor"),
        ("choice", "gp"),
        ("text", "Qwxz"),
        ("choice", "self"),
    )
    assert state.step == "when"
    turn = engine.handle(state, Inbound("text", "x" * 1001), render)
    assert turn.state.step == "when"
    said = render(turn.outbound[0].text)
    assert "1,001" in said and "1,000" in said
    assert "when" not in turn.state.answers


def test_language_switch_keeps_step_and_answers(engine: Engine, render) -> None:  # type: ignore[no-untyped-def]
    state = drive(engine, render, ("choice", "start"), ("choice", "poor"))
    turn = engine.handle(state, Inbound("command", "language"), render)
    assert turn.state.step == "language"
    choices = [c.id for c in turn.outbound[-1].choices]
    assert choices[:2] == ["en", "cy"] and len(choices) == 12
    turn = engine.handle(turn.state, Inbound("choice", "pl"), render)
    assert turn.state.step == "service_type"
    assert turn.state.locale == "pl"
    assert turn.state.answers == {"welcome": "start", "experience": "poor"}
    assert LocaleChanged("pl") in turn.events


def test_typed_commands_and_labels(engine: Engine, render) -> None:  # type: ignore[no-untyped-def]
    state = drive(engine, render, ("choice", "start"))
    assert engine.handle(state, Inbound("text", "/back"), render).state.step == "welcome"
    assert engine.handle(state, Inbound("text", "  POOR! "), render).state.step == "service_type"
    assert (
        engine.handle(state, Inbound("text", "/help@IntakeBot"), render).state.step == "experience"
    )
    # Not a command, not a label: re-prompted, nothing stored.
    turn = engine.handle(state, Inbound("text", "/rm -rf"), render)
    assert turn.state.step == "experience" and "experience" not in turn.state.answers


def test_a_dialogues_choices_reach_the_channel_as_declared(engine: Engine, render) -> None:  # type: ignore[no-untyped-def]
    """One choice type: what the dialogue declares is what a channel is given (the engine's
    own choices, such as languages, are the same type), not a copy in a second type."""
    state = drive(engine, render, ("choice", "start"))
    offered = engine.handle(state, Inbound("command", "help"), render).outbound[-1].choices
    declared = {c.id: c for c in INTAKE.step("experience").choices}
    assert offered and all(choice is declared[choice.id] for choice in offered)
    languages = engine.handle(state, Inbound("command", "language"), render).outbound[-1].choices
    assert {type(c) for c in languages} == {ChoiceDef}


def test_history_is_bounded(engine: Engine, render) -> None:  # type: ignore[no-untyped-def]
    state = drive(engine, render, ("choice", "start"))
    for _ in range(MAX_HISTORY + 20):
        state = engine.handle(state, Inbound("choice", "poor"), render).state
        state = engine.handle(state, Inbound("command", "back"), render).state
    assert len(state.history) <= MAX_HISTORY


def test_clean_text_keeps_markup_and_removes_invisible_controls() -> None:
    assert clean_text("  <b>hi</b>\u202e\u0000 ") == "<b>hi</b>"
    assert clean_text("a\r\n\r\n\r\n\r\nb") == "a\n\nb"
    # Stored as typed: not normalised to NFC (matching folds instead).
    assert clean_text("cafe\u0301") == "cafe\u0301"


def test_every_message_renders_in_english(render) -> None:  # type: ignore[no-untyped-def]
    for key, text in INTAKE.messages.items():
        out = render(
            Text(
                text.msgid,
                (
                    ("reference", "X"),
                    ("label", "L"),
                    ("answer", "A"),
                    ("length", "2"),
                    ("limit", "1"),
                    ("n", "3"),
                    ("change", "change"),
                    ("value", "V"),
                    *((command, command) for command in COMMANDS),
                ),
                text.plural,
                text.n,
            )
        )
        assert "{" not in out, key


def test_the_diagram_beside_the_dialogue_is_up_to_date() -> None:
    stored = (ROOT / "dialogs" / "intake.mmd").read_text(encoding="utf-8")
    assert stored == mermaid(INTAKE), "run `make diagram` and commit dialogs/intake.mmd"


def test_unknown_branch_target_is_rejected() -> None:
    from dataclasses import replace

    from bot.engine.dialog import Branch

    broken_steps = [
        replace(s, next=(Branch("nowhere"),)) if s.id == "experience" else s for s in INTAKE.steps
    ]
    with pytest.raises(ValueError, match="nowhere"):
        Engine(replace(INTAKE, steps=tuple(broken_steps)))


def test_numbers_are_formatted_for_the_persons_language(engine: Engine) -> None:
    catalogs = Catalogs(globals_={"contact_phone": "03000 616161"})
    state = drive(
        engine,
        catalogs.translator("en"),
        ("choice", "start"),
        ("choice", "poor"),
        ("choice", "gp"),
        ("text", "Qwxz"),
        ("choice", "self"),
    )
    turn = engine.handle(state, Inbound("text", "x" * 1001), catalogs.translator("es"))
    spanish = catalogs.render(turn.outbound[0].text, "es")
    english = catalogs.render(turn.outbound[0].text, "en")
    assert "1.001" in spanish and "1,001" not in spanish
    assert "1,001" in english


def test_path_reads_the_same_branches_the_machine_fires(engine: Engine, render) -> None:  # type: ignore[no-untyped-def]
    from bot.engine.engine import _Model

    def machine_walk(answers: dict) -> list[str]:  # type: ignore[type-arg]
        model, seen = _Model(INTAKE.first_step, answers, engine.switches), []
        while model.state not in seen:
            seen.append(model.state)
            step = INTAKE.by_id[model.state]
            if step.kind in ("text", "choice", "lookup", "info") and model.state not in answers:
                break
            if not step.next or not engine.machine.events["advance"].trigger(model):
                break
        return seen

    answer_sets = [
        drive(
            engine,
            render,
            ("choice", "start"),
            ("choice", e),
            ("choice", t),
            ("text", "Qwxz"),
            ("choice", r),
        ).answers
        for e in ("poor", "good", "mixed")
        for t in ("hospital", "mental_health", "gp", "childrens_social_care", "other")
        for r in ("self", "work")
    ]
    for answers in answer_sets:
        for extra in (
            {},
            {
                "works_there": "yes",
                "whistleblowing": "continue",
                "when": "skip",
                "service_part": "skip",
                "what_happened": "x",
                "share_with_service": "yes",
                "risk": "no",
                "authorities": "both",
                "complaint": "told",
                "complaint_info": "continue",
                "mha": "no",
                "contact": "yes",
                "contact_name": "A",
                "contact_email": "a@b.org",
                "contact_phone": "skip",
                "alerts": "no",
                "referral": "yes",
                "referral_name": "skip",
            },
        ):
            merged = {**answers, **extra}
            assert engine.path(merged) == machine_walk(merged)


def test_a_turn_moves_where_firing_the_machine_would_without_firing_it(
    render, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """A turn takes its step's branch from the machine's table (`_next_step`), as `path()`
    does: firing the machine's `advance` trigger, with its generic machinery, was about a
    third of the engine's CPU per turn. Two engines take the same inputs, one whose machine
    refuses to be fired and one that moves by firing it: after every turn, editing included
    (a change of experience walks on past the answers kept), their states are equal."""
    from bot.engine.engine import _Model

    table = Engine(INTAKE)
    advance = table.machine.events["advance"]

    def refused(*args: object, **kwargs: object) -> bool:
        raise AssertionError("a turn fired the machine")

    monkeypatch.setattr(advance, "trigger", refused)
    firing = Engine(INTAKE)
    fire = firing.machine.events["advance"].trigger

    def fired(step_id: str, answers: dict) -> str | None:  # type: ignore[type-arg]
        if not INTAKE.by_id[step_id].next:  # the machine has no `advance` out of it at all
            return None
        model = _Model(step_id, answers, firing.switches)
        return model.state if fire(model) else None

    monkeypatch.setattr(firing, "_next_step", fired)
    inputs = [
        *GOOD_GP_TO_SUMMARY,
        ("choice", "experience"),
        ("choice", "poor"),  # a changed answer: the walk goes on to what poor care asks
        ("choice", "skip"),
        ("text", "Ward 3"),
        ("choice", "yes"),
        ("choice", "neither"),
        ("choice", "not_yet"),
        ("choice", "continue"),
        ("choice", "no"),
        ("choice", "submit"),
    ]
    ours, theirs = table.start("en").state, firing.start("en").state
    steps = [ours.step]
    for kind, value in inputs:
        ours = table.handle(ours, Inbound(kind, value), render, FixedNeeds()).state  # type: ignore[arg-type]
        theirs = firing.handle(theirs, Inbound(kind, value), render, FixedNeeds()).state  # type: ignore[arg-type]
        assert ours == theirs
        steps.append(ours.step)
    assert {"summary", "experience", "when", "risk"} <= set(steps)
    assert ours.status == "submitted"


def test_state_copy_is_independent() -> None:
    state = ConversationState(
        "provider",
        answers={"provider": {"text": "a"}},
        scratch={"matches": [["1", "n", "l"]]},
        history=["welcome"],
    )
    clone = state.copy()
    clone.answers["provider"]["text"] = "b"
    clone.scratch["matches"][0][0] = "2"
    clone.history.append("x")
    assert (
        state.answers["provider"]["text"] == "a"
        and state.scratch["matches"][0][0] == "1"
        and state.history == ["welcome"]
    )


def test_a_state_stored_with_the_reference_among_the_answers_still_resumes(
    engine: Engine, render
) -> None:  # type: ignore[no-untyped-def]
    # As real databases hold it: the receipt kept in the answers before it had its own place.
    stored = {
        "step": "submitted",
        "locale": "en",
        "answers": {"experience": "good", "_reference": "OLDR-2345", "_acknowledgement": "email"},
        "history": ["summary"],
        "status": "submitted",
        "scratch": {},
        "resume_step": None,
        "editing": False,
    }
    state = ConversationState.from_json(stored)
    assert state.reference == "OLDR-2345" and state.acknowledgement == "email"
    assert state.answers == {"experience": "good"}
    resumed = [render(o.text) for o in engine.prompt(state)]
    assert "OLDR-2345" in resumed[0]
    assert any("We will email you" in said for said in resumed)
    later = engine.handle(state, Inbound("text", "one more thing"), render)
    assert "OLDR-2345" in render(later.outbound[0].text)
    # Written back in the new place only.
    written = later.state.to_json()
    assert written["reference"] == "OLDR-2345" and "_reference" not in written["answers"]


def test_an_active_state_is_stored_exactly_as_before(engine: Engine, render) -> None:  # type: ignore[no-untyped-def]
    state = drive(engine, render, ("choice", "start"), ("choice", "poor"))
    assert set(state.to_json()) == {
        "step",
        "locale",
        "answers",
        "history",
        "status",
        "scratch",
        "resume_step",
        "editing",
    }


class _CountingNeeds(FixedNeeds):
    def __init__(self) -> None:
        super().__init__(reference="NEED-2345", acknowledge_by="sms")
        self.references = 0
        self.acknowledged: list[dict[str, object]] = []

    def new_reference(self) -> str:
        self.references += 1
        return super().new_reference()

    def acknowledgement(self, report):  # type: ignore[no-untyped-def]
        self.acknowledged.append(dict(report))
        return super().acknowledgement(report)


#: Good care at a GP: may share it, no contact, no referral; the shortest path to the summary.
GOOD_GP_TO_SUMMARY = (
    ("choice", "start"),
    ("choice", "good"),
    ("choice", "gp"),
    ("text", "Oak Surgery"),
    ("choice", "self"),
    ("text", "Kind staff."),
    ("choice", "yes"),
    ("choice", "no"),
    ("choice", "no"),
)


def test_the_engine_asks_for_what_it_needs_only_when_a_step_needs_it(
    engine: Engine, render
) -> None:  # type: ignore[no-untyped-def]
    needs = _CountingNeeds()
    state = engine.start("en").state
    for kind, value in [
        *GOOD_GP_TO_SUMMARY,
        ("choice", "edit"),
        ("choice", "summary"),
    ]:
        state = engine.handle(state, Inbound(kind, value), render, needs).state  # type: ignore[arg-type]
    # Only the lookup step searched, narrowed by the answer the step names; no reference yet.
    assert needs.searched == [("Oak Surgery", "gp")]
    assert state.step == "summary" and needs.references == 0
    turn = engine.handle(state, Inbound("choice", "submit"), render, needs)
    assert needs.references == 1 and turn.state.reference == "NEED-2345"
    (report_fields,) = needs.acknowledged
    assert report_fields["experience"] == "good" and "reference" not in report_fields
    assert turn.state.acknowledgement == "sms"
    assert any("text message" in render(o.text) for o in turn.outbound)


# ---------------------------------------------------------------------- switches, saved states

#: Good care at a service matched in the directory, contact by email: where inspection alerts
#: may be offered (they are about one registered location).
TO_CONTACT_PHONE = (
    ("choice", "start"),
    ("choice", "good"),
    ("choice", "care_home"),
    ("text", "Castle View"),
)


def _at_contact_phone(engine: Engine, render) -> ConversationState:  # type: ignore[no-untyped-def]
    state = engine.start("en").state
    matches = FixedNeeds(matches=[("1-900000003", "Castle View", "Castle View, Lancaster")])
    for kind, value in [
        *TO_CONTACT_PHONE,
        ("choice", "1-900000003"),
        ("choice", "self"),
        ("text", "Lovely garden."),
        ("choice", "yes"),
        ("choice", "yes"),
        ("text", "Sam Example"),
        ("text", "sam@example.org"),
    ]:
        state = engine.handle(state, Inbound(kind, value), render, matches).state  # type: ignore[arg-type]
    assert state.step == "contact_phone"
    return state


def test_inspection_alerts_are_offered_only_when_the_switch_is_on(render) -> None:  # type: ignore[no-untyped-def]
    """The engine is built with the deployment's switches; the dialogue's `Switch` reads
    them. Alerts that could never be emailed are not offered."""
    deliverable = Engine(INTAKE, switches={"email_alerts": True})
    turn = deliverable.handle(
        _at_contact_phone(deliverable, render), Inbound("choice", "skip"), render
    )
    assert turn.step == "alerts"
    assert "alerts" in deliverable.path({**turn.state.answers, "alerts": "yes"})
    for off in (Engine(INTAKE), Engine(INTAKE, switches={"email_alerts": False})):
        turn = off.handle(_at_contact_phone(off, render), Inbound("choice", "skip"), render)
        assert turn.step == "referral"  # straight past the alerts question
        # An answer saved while alerts could be sent drops out of the report now they cannot.
        assert "alerts" not in off.on_path_answers({**turn.state.answers, "alerts": "yes"})


def test_a_conversation_saved_at_the_summary_before_new_questions_is_asked_them(
    engine: Engine,
    render,  # type: ignore[no-untyped-def]
) -> None:
    """A state stored by the release before `share_with_service` and `referral` existed:
    pressing send asks each missing question (and only those), then the summary again."""
    saved = {
        "step": "summary",
        "locale": "en",
        "answers": {
            "welcome": "start",
            "experience": "poor",
            "service_type": "gp",
            "provider": {"text": "Oak Surgery", "location_id": None, "name": None},
            "relationship": "self",
            "when": "skip",
            "service_part": "skip",
            "what_happened": "Nobody called me back.",
            "risk": "no",
            "authorities": "neither",
            "complaint": "not_yet",
            "complaint_info": "continue",
            "contact": "no",
        },
        "history": ["welcome", "experience", "service_type", "provider", "relationship"],
        "status": "active",
    }
    state = ConversationState.from_json(json.loads(json.dumps(saved)))
    needs = FixedNeeds()
    turn = engine.handle(state, Inbound("choice", "submit"), render, needs)
    assert turn.step == "share_with_service" and not turn.events  # nothing sent yet
    said = " ".join(render(o.text) for o in turn.outbound)
    assert "please answer a question we have not asked you yet" in said
    assert "Can we share your feedback with the service?" in said
    turn = engine.handle(turn.state, Inbound("choice", "no"), render, needs)
    assert turn.step == "referral"  # past every question already answered
    turn = engine.handle(turn.state, Inbound("choice", "yes"), render, needs)
    assert turn.step == "referral_name"
    turn = engine.handle(turn.state, Inbound("text", "Citizens Advice"), render, needs)
    assert turn.step == "summary" and not turn.state.editing
    turn = engine.handle(turn.state, Inbound("choice", "submit"), render, needs)
    assert turn.step == "submitted"
    (event,) = turn.events
    report = event.report  # type: ignore[union-attr]
    assert report["share_with_service"] == "no" and report["referral"] == "yes"
    assert report["referral_name"] == "Citizens Advice"
    assert report["what_happened"] == "Nobody called me back." and report["complaint"] == "not_yet"


def test_a_complete_conversation_is_sent_at_once(engine: Engine, render) -> None:  # type: ignore[no-untyped-def]
    state = drive(
        engine,
        render,
        *GOOD_GP_TO_SUMMARY,
    )
    assert state.step == "summary"
    turn = engine.handle(state, Inbound("choice", "submit"), render, FixedNeeds())
    assert turn.step == "submitted" and len(turn.events) == 1
