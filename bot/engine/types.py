"""The engine's neutral vocabulary: what goes in, what comes out, what is kept.

Nothing here knows about HTTP, Telegram, SQL or gettext. Texts travel as message ids
(`Text`) and are rendered by a translator that the service passes in, so one turn can be
shown in any language and re-rendered after a language switch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from bot.engine.conditions import Condition

InboundKind = Literal["text", "choice", "command", "start"]
InputKind = Literal["choice", "text", "none"]
Status = Literal["active", "submitted", "cancelled", "ended"]

#: Global commands accepted at every step, in every channel.
COMMANDS: tuple[str, ...] = (
    "back",
    "restart",
    "help",
    "privacy",
    "language",
    "cancel",
    "exit",
)


@dataclass(frozen=True, slots=True)
class Text:
    """A piece of text to show: a gettext message id with parameters, or verbatim text.

    `plural` and `n` select a plural form (ngettext). Parameter values may themselves be
    `Text`, so a summary line can embed a translated choice label; ints are formatted for
    the person's locale when rendered. `verbatim=True` marks text
    that must never be translated (the person's own words, a service name from the directory).
    """

    msgid: str
    params: tuple[tuple[str, str | int | Text], ...] = ()
    plural: str | None = None
    n: int | None = None
    verbatim: bool = False
    context: str | None = None
    #: A composite: rendered as its parts, one per line (e.g. the summary).
    parts: tuple[Text, ...] = ()

    @staticmethod
    def raw(value: str) -> Text:
        return Text(value, verbatim=True)

    @staticmethod
    def lines(*parts: Text) -> Text:
        return Text("", parts=tuple(parts))


#: Numbers stay numbers until rendering, so each language formats them its own way.
Param: TypeAlias = "str | int | Text"


def T(msgid: str, /, **params: Param) -> Text:
    """Build a translatable `Text` with named parameters (a gettext keyword for extraction)."""
    return Text(msgid, tuple(sorted(params.items())))


def C(context: str, msgid: str, /) -> Text:
    """Build a `Text` with a gettext context (pgettext), for a short word whose translation
    depends on its use, such as a command word."""
    return Text(msgid, context=context)


def P(singular: str, plural: str, n: int, /, **params: Param) -> Text:
    """Build a plural-aware `Text` (ngettext); `{n}` is available as a parameter."""
    merged: dict[str, Param] = {**params, "n": n}
    return Text(singular, tuple(sorted(merged.items())), plural=plural, n=n)


@dataclass(frozen=True, slots=True)
class Link:
    """A link a message offers: a stable `key` (e.g. "complain_nhs") that the service turns
    into an address from its configuration, and the words to show for it. The engine never
    holds an address: which page a key means is configuration, not dialogue."""

    key: str
    label: Text


#: What a choice does instead of answering its step: one of the engine's commands
#: (`COMMANDS`), `submit` the report, or `edit` an answer.
ChoiceAction = Literal[
    "back", "restart", "help", "privacy", "language", "cancel", "exit", "submit", "edit"
]


@dataclass(frozen=True, slots=True)
class ChoiceDef:
    """One choice: what a dialogue declares, and what the engine offers (its own built-in
    choices, directory matches and languages are `ChoiceDef(id, label)`). Channels show `id`
    and `label` only; the rest is for the engine."""

    id: str
    label: Text
    #: Said right after the person picks this choice (e.g. the 999 advice after "yes").
    note: Text | None = None
    #: Shown only when this holds for the answers so far.
    when: Condition | None = None
    #: What choosing it does, when that is not answering the step.
    action: ChoiceAction | None = None
    #: Links shown with the note (the routes a person needs right then).
    links: Sequence[Link] = ()
    #: The note (and its links) is said only when this holds for the answers, this choice
    #: included (None: always).
    note_when: Condition | None = None


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """One answer on the summary: the step it answers (a stable id), how it is named, the
    answer as shown (a choice's label, the person's own words, or "not given"), and whether
    the person may change it from the summary."""

    step: str
    label: Text
    value: Text
    changeable: bool = True


@dataclass(frozen=True, slots=True)
class Outbound:
    """One message from the bot. `input` says what the channel should offer next."""

    text: Text
    choices: tuple[ChoiceDef, ...] = ()
    input: InputKind = "none"
    #: Where the person can go next (shown after the text, before the choices).
    links: tuple[Link, ...] = ()
    #: The summary step's message: its answers as rows (`text` says the same for channels
    #: that show only text).
    summary: tuple[SummaryRow, ...] = ()
    #: A question being changed: the answer it has now, as stored (the person's own words),
    #: so a channel can put it in the input box (`text` quotes it).
    value: str | None = None


@dataclass(frozen=True, slots=True)
class Inbound:
    """One thing the person did.

    kind="text": typed text; "choice": a choice id (button or typed label); "command": a
    global command id from `COMMANDS`; "start": open a conversation (value: an optional
    start parameter such as a directory location id from a deep link).
    What the engine needs from outside (directory matches, a reference number) it asks for
    through `bot.engine.needs.Needs`, so the engine stays free of I/O.
    """

    kind: InboundKind
    value: str = ""


@dataclass(slots=True)
class ConversationState:
    """Everything the engine needs to resume a conversation; stored as JSON between turns."""

    step: str
    locale: str = "en"
    answers: dict[str, Any] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)
    status: Status = "active"
    #: Step-local scratch data, e.g. directory matches offered at the provider step.
    scratch: dict[str, Any] = field(default_factory=dict)
    #: Where `language`, `help` and editing return to.
    resume_step: str | None = None
    editing: bool = False
    #: Set by a submit: the report's reference number and how it will be acknowledged.
    #: (States stored before these existed keep them in `answers` as `_reference` and
    #: `_acknowledgement`; `from_json` moves them here.)
    reference: str | None = None
    acknowledgement: str | None = None

    def copy(self) -> ConversationState:
        """An independent copy. State is JSON-shaped (dicts, lists, scalars), so a walk over
        those is enough and several times cheaper than `copy.deepcopy`."""
        return ConversationState(
            step=self.step,
            locale=self.locale,
            answers=_clone(self.answers),
            history=list(self.history),
            status=self.status,
            scratch=_clone(self.scratch),
            resume_step=self.resume_step,
            editing=self.editing,
            reference=self.reference,
            acknowledgement=self.acknowledgement,
        )

    def to_json(self) -> dict[str, Any]:
        data = {
            "step": self.step,
            "locale": self.locale,
            "answers": self.answers,
            "history": self.history,
            "status": self.status,
            "scratch": self.scratch,
            "resume_step": self.resume_step,
            "editing": self.editing,
        }
        # Only once submitted: an active conversation's stored state is as it always was.
        if self.reference is not None:
            data["reference"] = self.reference
            data["acknowledgement"] = self.acknowledgement
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConversationState:
        answers = dict(data.get("answers", {}))
        # Stored before the receipt had its own place: it was kept among the answers.
        old_reference = answers.pop(_OLD_REFERENCE_KEY, None)
        old_acknowledgement = answers.pop(_OLD_ACKNOWLEDGEMENT_KEY, None)
        reference = data.get("reference", old_reference)
        return cls(
            step=str(data["step"]),
            locale=str(data.get("locale", "en")),
            answers=answers,
            history=list(data.get("history", [])),
            status=data.get("status", "active"),
            scratch=dict(data.get("scratch", {})),
            resume_step=data.get("resume_step"),
            editing=bool(data.get("editing", False)),
            reference=None if reference is None else str(reference),
            acknowledgement=data.get("acknowledgement", old_acknowledgement),
        )


#: Where states stored before 2026-12 keep the receipt: read, never written.
_OLD_REFERENCE_KEY = "_reference"
_OLD_ACKNOWLEDGEMENT_KEY = "_acknowledgement"


def _clone(value: Any) -> Any:
    # Recurse only into containers: most values are strings, and a call per string would
    # cost more than the copy itself.
    if isinstance(value, dict):
        return {k: _clone(v) if isinstance(v, dict | list | tuple) else v for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clone(v) if isinstance(v, dict | list | tuple) else v for v in value]
    return value


@dataclass(frozen=True, slots=True)
class ReportSubmitted:
    """The person pressed submit: the service stores `report` durably before anything else."""

    report: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ConversationClosed:
    """Cancelled, exited or ended without a report: the service erases what was typed.
    "exit" (the quick exit) also asks the channel to clear what the screen shows, where it
    can (bot/intake/exit_help.py says per channel what that does and does not hide)."""

    reason: Literal["cancelled", "not_covered", "exit"]


@dataclass(frozen=True, slots=True)
class LocaleChanged:
    locale: str


Event: TypeAlias = ReportSubmitted | ConversationClosed | LocaleChanged


@dataclass(frozen=True, slots=True)
class Turn:
    state: ConversationState
    outbound: tuple[Outbound, ...]
    events: tuple[Event, ...] = ()
    #: What the person said, as it should appear in a transcript (a choice's label).
    echo: Text | None = None

    @property
    def step(self) -> str:
        return self.state.step
