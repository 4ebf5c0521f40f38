"""A two-question satisfaction survey: a second dialogue on the same engine.

It shows that a dialogue is content: its step ids differ from the intake's, it declares
which step is which kind, and its branch is a condition value, and the engine runs it
unchanged. It reuses the intake's wording (already translated in every catalog) and is not
offered by any channel yet.
"""

from __future__ import annotations

from typing import Any

from bot.engine.conditions import ALWAYS, Answer, Answers, Condition
from bot.engine.dialog import Branch, ChoiceDef, Dialog, Step
from bot.engine.types import T
from dialogs.intake import COMMON_CHOICES, MESSAGES

# The step ids, named once.
RATING = "rating"
COMMENT = "comment"
CHECK = "check"
THANKS = "thanks"
STOPPED = "stopped"
CLOSED = "closed"

#: Only care that was not all good asks for more.
NOT_ALL_GOOD: Condition = Answer(RATING).is_in("poor", "mixed")

STEPS: tuple[Step, ...] = (
    Step(
        RATING,
        "choice",
        prompt=(T("Was the care poor, good, or both?"),),
        choices=(
            ChoiceDef("poor", T("Poor")),
            ChoiceDef("good", T("Good")),
            ChoiceDef("mixed", T("Both good and poor")),
        ),
        next=(Branch(COMMENT, NOT_ALL_GOOD), Branch(CHECK)),
        summary_label=T("Kind of experience"),
    ),
    Step(
        COMMENT,
        "text",
        prompt=(
            T(
                "Please tell us what happened. More detail helps us: what happened, who was "
                "involved or their jobs, and examples."
            ),
        ),
        max_length=2000,
        skippable=ALWAYS,
        next=(Branch(CHECK),),
        summary_label=T("What happened"),
    ),
    Step(
        CHECK,
        "summary",
        choices=(
            ChoiceDef("send", T("Send my report"), action="submit"),
            ChoiceDef("change", T("Change an answer"), action="edit"),
        ),
    ),
    Step("change_answer", "edit"),
    Step(
        THANKS,
        "submitted",
        prompt=(
            T(
                "Thank you. We have your report. Your reference number is {reference}. Keep "
                "this number, and quote it if you contact us about this report."
            ),
        ),
    ),
    Step(STOPPED, "cancelled"),
    Step(CLOSED, "ended"),
)


def build_report(answers: Answers) -> dict[str, Any]:
    comment = answers.get(COMMENT)
    return {"rating": answers.get(RATING), "comment": None if comment == "skip" else comment}


SURVEY = Dialog(
    steps=STEPS,
    first_step=RATING,
    build_report=build_report,
    messages=MESSAGES,
    common_choices=COMMON_CHOICES,
)
