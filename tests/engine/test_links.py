"""Links in the engine: a step's links go with the prompt message it names (`links_at`), a
choice's links with its note, and a note with `note_when` is said only when that holds. The
engine carries link keys and labels only; addresses are the service's configuration."""

from __future__ import annotations

from bot.engine.conditions import Answer
from bot.engine.dialog import Branch, ChoiceDef, Dialog, Step
from bot.engine.engine import Engine
from bot.engine.types import Inbound, Link, T, Text
from dialogs.intake import COMMON_CHOICES, MESSAGES

HELP = Link("help_page", T("Help page"))
ADVICE = Link("advice", T("Advice"))


def _dialog() -> Dialog:
    steps = (
        Step(
            "first",
            "choice",
            prompt=(T("One"), T("Two"), T("Question?")),
            links=(HELP,),
            links_at=1,
            choices=(ChoiceDef("a", T("A")), ChoiceDef("b", T("B"))),
            next=(Branch("second"),),
        ),
        Step(
            "second",
            "choice",
            prompt=(T("Second?"),),
            choices=(
                ChoiceDef(
                    "x",
                    T("X"),
                    note=T("Tell someone."),
                    links=(ADVICE,),
                    note_when=Answer("first").equals("a"),
                ),
            ),
            next=(Branch("done"),),
        ),
        Step("done", "info", prompt=(T("Done."),), links=(HELP,)),
        Step("ended", "ended"),
        Step("cancelled", "cancelled"),
    )
    return Dialog(steps, "first", lambda a: dict(a), MESSAGES, COMMON_CHOICES)


def _translate(text: Text) -> str:
    return text.msgid


def test_step_links_go_with_the_message_they_name() -> None:
    engine = Engine(_dialog())
    turn = engine.start("en")
    assert [o.links for o in turn.outbound] == [(), (HELP,), ()]
    assert turn.outbound[-1].choices  # the choices stay on the last message
    state = engine.handle(turn.state, Inbound("choice", "a"), _translate).state
    done = engine.handle(state, Inbound("choice", "x"), _translate)
    assert done.outbound[-1].links == (HELP,)  # by default: the last message


def test_a_note_and_its_links_are_said_only_when_its_condition_holds() -> None:
    engine = Engine(_dialog())
    for first, said in (("a", True), ("b", False)):
        state = engine.start("en").state
        state = engine.handle(state, Inbound("choice", first), _translate).state
        turn = engine.handle(state, Inbound("choice", "x"), _translate)
        notes = [o for o in turn.outbound if o.text.msgid == "Tell someone."]
        if said:
            assert [n.links for n in notes] == [(ADVICE,)]
        else:
            assert notes == []
            assert all(ADVICE not in o.links for o in turn.outbound)
