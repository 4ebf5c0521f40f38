"""The chat survey: three optional questions about the chat itself, after a report is sent.

A second dialogue on the same engine: its step ids differ from the intake's (the service
tells a survey conversation from an intake one by its step), it is `numbered` ("Question 1
of 3") and it has no summary: answering the last question branches into its `submitted`
step, which submits. It issues no reference number: the answers are stored apart from the
report, by day only, with nothing that links them to the report or the person
(`bot.ports.ChatSurvey`). Cancelling keeps nothing of it.
"""

from __future__ import annotations

from typing import Any

from bot.engine.conditions import ALWAYS, Answers
from bot.engine.dialog import Branch, ChoiceDef, Dialog, Step
from bot.engine.types import T, Text
from dialogs.intake import COMMON_CHOICES, MESSAGES, NO, YES

# The step ids, named once (persisted in conversations: never rename one).
EASE = "survey_ease"
SAID_ALL = "survey_said_all"
IMPROVE = "survey_improve"
THANKS = "survey_thanks"
STOPPED = "survey_stopped"
CLOSED = "survey_closed"

#: The questions whose answers are stored, in order.
QUESTIONS: tuple[str, ...] = (EASE, SAID_ALL, IMPROVE)

THANK_YOU = T("Thank you. We have saved your answers. They help us make this chat better.")

STEPS: tuple[Step, ...] = (
    Step(
        EASE,
        "choice",
        prompt=(T("How easy was it to use this chat?"),),
        choices=(
            ChoiceDef("very_easy", T("Very easy")),
            ChoiceDef("easy", T("Easy")),
            ChoiceDef("neither", T("Neither easy nor difficult")),
            ChoiceDef("difficult", T("Difficult")),
            ChoiceDef("very_difficult", T("Very difficult")),
        ),
        next=(Branch(SAID_ALL),),
    ),
    Step(
        SAID_ALL,
        "choice",
        prompt=(T("Could you tell us everything you wanted to?"),),
        choices=(
            ChoiceDef("yes", YES),
            ChoiceDef("partly", T("Partly")),
            ChoiceDef("no", NO),
        ),
        next=(Branch(IMPROVE),),
    ),
    Step(
        IMPROVE,
        "text",
        prompt=(
            T(
                "What would make this chat better? Please do not include your name or other "
                "personal details."
            ),
        ),
        max_length=1000,
        skippable=ALWAYS,
        next=(Branch(THANKS),),
    ),
    Step(THANKS, "submitted", prompt=(THANK_YOU,)),
    Step(STOPPED, "cancelled"),
    Step(CLOSED, "ended"),
)

#: The intake's engine messages, less the ones that speak of a report.
SURVEY_MESSAGES: dict[str, Text] = {
    **MESSAGES,
    "cancelled": T("You have stopped the survey. We have not kept any of its answers."),
    "already_submitted": THANK_YOU,
    "question_number": T("Question {n} of {total}"),
}


def build_report(answers: Answers) -> dict[str, Any]:
    """The stored answers: choice ids, the typed suggestion (None when skipped)."""
    return {
        step: None if answers.get(step) in (None, "skip") else answers.get(step)
        for step in QUESTIONS
    }


SURVEY = Dialog(
    steps=STEPS,
    first_step=EASE,
    build_report=build_report,
    messages=SURVEY_MESSAGES,
    common_choices=COMMON_CHOICES,
    numbered=True,
    issues_reference=False,
)
