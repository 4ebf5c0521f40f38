"""How a dialogue is described: steps as values, branches as data, no behaviour hidden in code.

`dialogs/` builds a `Dialog` from these types; the engine runs any `Dialog`. Step ids are
persisted in stored conversations and are a public API: never rename one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from bot.engine.types import Text

Answers: TypeAlias = Mapping[str, Any]
Condition: TypeAlias = Callable[[Answers], bool]

#: choice: pick one of `choices`; text: free text (validated); info: read, then `continue`;
#: lookup: free text searched in the directory, then matches offered as choices;
#: language / summary / edit / final: built-in behaviour of the engine.
StepKind = Literal["choice", "text", "info", "lookup", "language", "summary", "edit", "final"]


@dataclass(frozen=True, slots=True)
class Valid:
    value: Any


@dataclass(frozen=True, slots=True)
class Invalid:
    reason: Text


Validator: TypeAlias = Callable[[str, Answers], "Valid | Invalid"]
PromptFn: TypeAlias = Callable[[Answers], Sequence[Text]]


@dataclass(frozen=True, slots=True)
class ChoiceDef:
    id: str
    label: Text
    #: Said right after the person picks this choice (e.g. the 999 advice after "yes").
    note: Text | None = None
    #: Shown only when this holds for the answers so far.
    when: Condition | None = None


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
    help: Text | None = None
    #: Choices that end or divert the conversation instead of following `next`.
    exits: Mapping[str, Literal["end", "cancel"]] = field(default_factory=dict)


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

    def step(self, step_id: str) -> Step:
        return self.by_id[step_id]

    @property
    def by_id(self) -> dict[str, Step]:
        cached: dict[str, Step] | None = getattr(self, "_by_id", None)
        if cached is None:
            cached = {s.id: s for s in self.steps}
            object.__setattr__(self, "_by_id", cached)
        return cached
