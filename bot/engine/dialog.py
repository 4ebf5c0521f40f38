"""How a dialogue is described: steps as values, branches as data, no behaviour hidden in code.

`dialogs/` builds a `Dialog` from these types; the engine runs any `Dialog`. The engine knows
step KINDS and never a step id: each dialogue declares which of its steps is which kind, and
its conditions as values (`bot.engine.conditions`). Step ids are persisted in stored
conversations and are a public API: never rename one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from bot.engine.conditions import Answers, Condition
from bot.engine.types import ChoiceAction, ChoiceDef, Link, Text

#: choice: pick one of `choices`; text: free text (validated); info: read, then `continue`;
#: lookup: free text searched in the directory (`Needs.search_directory`), then matches
#: offered as choices; language: pick the conversation's language (the `language` command
#: goes here); summary: the answers so far, with choices whose `action` submits, edits or
#: restarts; edit: pick an answer to change; submitted: the confirmation after a submit (its
#: prompt may use `{reference}`); cancelled / ended: where a cancel or an `end` exit stops.
StepKind = Literal[
    "choice",
    "text",
    "info",
    "lookup",
    "language",
    "summary",
    "edit",
    "submitted",
    "cancelled",
    "ended",
]


@dataclass(frozen=True, slots=True)
class Valid:
    value: Any


@dataclass(frozen=True, slots=True)
class Invalid:
    reason: Text


Validator: TypeAlias = Callable[[str, Answers], "Valid | Invalid"]
PromptFn: TypeAlias = Callable[[Answers], Sequence[Text]]


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a `submitted` step's prompt may depend on: the report's reference number and how
    the service will acknowledge it ("email", "sms" or None)."""

    reference: str
    acknowledgement: str | None


ReceiptPromptFn: TypeAlias = Callable[[Receipt], Sequence[Text]]


@dataclass(frozen=True, slots=True)
class Branch:
    """Go to `to` if `when` holds (or always, when `when` is None). First match wins."""

    to: str
    when: Condition | None = None


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    kind: StepKind
    #: Messages said when the step is entered; the last one carries the choices or input box.
    prompt: Sequence[Text] | PromptFn = ()
    choices: Sequence[ChoiceDef] = ()
    next: Sequence[Branch] = ()
    #: Free text: turned into the stored value, or refused with a specific reason.
    validate: Validator | None = None
    max_length: int = 1000
    #: Offer a `skip` choice; when it holds for the answers (None: never).
    skippable: Condition | None = None
    #: How the answer is named on the summary; None: not shown (and not editable).
    summary_label: Text | None = None
    #: Whether the answer may be changed from the summary (its row's `changeable`).
    changeable: bool = True
    help: Text | None = None
    #: Choices that end or divert the conversation instead of following `next`.
    exits: Mapping[str, Literal["end", "cancel"]] = field(default_factory=dict)
    #: A `lookup` step: the step whose answer narrows the directory search, if any.
    search_within: str | None = None
    #: A `submitted` step: its messages from the receipt (used instead of `prompt`).
    receipt: ReceiptPromptFn | None = None
    #: Links shown with one of the prompt's messages: the one at `links_at` (by default the
    #: last, which carries the choices).
    links: Sequence[Link] = ()
    links_at: int = -1


@dataclass(frozen=True)
class Dialog:
    steps: Sequence[Step]
    first_step: str
    #: The report the intake team receives, built from the answers on the taken path.
    build_report: Callable[[Answers], dict[str, Any]]
    #: Messages for engine situations, by key (see bot.engine.engine.REQUIRED_MESSAGES).
    messages: Mapping[str, Text]
    #: Choice labels for the engine's built-in choices (skip, continue, none, ...).
    common_choices: Mapping[str, Text]
    #: (locale code, name of the language in itself), offered at the `language` step.
    languages: Sequence[tuple[str, str]] = ()
    #: Each question says where it is ("Question 2 of 3", the optional `question_number`
    #: message): for a short dialogue with a fixed number of questions.
    numbered: bool = False
    #: A submit asks the service for a reference number (and how it will be acknowledged).
    #: An anonymous dialogue (a survey) has none: nothing can be quoted back to it.
    issues_reference: bool = True

    def step(self, step_id: str) -> Step:
        return self.by_id[step_id]

    def step_of_kind(self, kind: StepKind) -> str | None:
        """The id of the dialogue's (first) step of this kind, if it has one."""
        kinds: dict[str, str] | None = getattr(self, "_kinds", None)
        if kinds is None:
            kinds = {}
            for s in self.steps:
                kinds.setdefault(s.kind, s.id)
            object.__setattr__(self, "_kinds", kinds)
        return kinds.get(kind)

    @property
    def by_id(self) -> dict[str, Step]:
        cached: dict[str, Step] | None = getattr(self, "_by_id", None)
        if cached is None:
            cached = {s.id: s for s in self.steps}
            object.__setattr__(self, "_by_id", cached)
        return cached


__all__ = [
    "Answers",
    "Branch",
    "ChoiceAction",
    "ChoiceDef",
    "Condition",
    "Dialog",
    "Invalid",
    "Link",
    "Receipt",
    "Step",
    "StepKind",
    "Valid",
]
