"""The dialogue engine: `handle(state, inbound) -> Turn`, pure and synchronous.

The engine knows step KINDS (choice, text, lookup, info, language, summary, edit,
submitted, cancelled, ended) and never a step id: the dialogue declares which step is which
kind, and what a choice does (`ChoiceDef.action`). What it needs from outside (directory
matches, a reference number, how a report will be acknowledged) it asks of a `Needs` object
passed in, only when a step of the right kind needs it.

Branching is declared once, as a `transitions.Machine` built from the dialogue's branches:
one machine per dialogue definition, shared by every conversation (one per conversation
would cost ~9 ms and ~480 KB each). Which branch a step takes has one implementation,
`_next_step`: the first of the machine's own transitions out of the step, in the order the
machine tries them, whose condition holds. A turn's move and `path()` both read it. Firing
the machine's `advance` trigger does the same (tests/engine/test_engine.py checks the two
agree over the dialogue's paths), through its generic machinery: a model object, enter and
exit callbacks, debug logging, about a third of the engine's CPU per turn (BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from transitions import EventData, Machine

from bot.engine.commands import (
    CHANGE_WORD,
    COMMAND_WORDS,
    START,
    UNKNOWN,
    command_words,
    parse_change,
    parse_command,
)
from bot.engine.conditions import Answers, Condition, Switches
from bot.engine.dialog import Dialog, Invalid, Receipt, Step, StepKind
from bot.engine.needs import NOTHING_OUTSIDE, Needs
from bot.engine.text import clean_text, fold
from bot.engine.types import (
    COMMANDS,
    ChoiceAction,
    ChoiceDef,
    ConversationClosed,
    ConversationState,
    Event,
    Inbound,
    LocaleChanged,
    Outbound,
    ReportSubmitted,
    SummaryRow,
    Text,
    Turn,
)

Translate = Callable[[Text], str]

#: Keys the dialogue's `messages` must define; the engine says these in its own situations.
REQUIRED_MESSAGES: tuple[str, ...] = (
    "choose_one",  # a typed answer matched no choice
    "stale_choice",  # a button from an earlier step
    "empty_text",  # nothing typed where text is needed
    "too_long",  # over the step's limit ({limit}, {length})
    "help",  # general help
    "privacy",  # the privacy notice ({url} may be used)
    "cannot_go_back",
    "cancelled",
    "exited",  # the quick exit's reply: it must say nothing about what the chat was for
    "ended",  # any message after the conversation ended
    "already_submitted",  # any message after a submit ({reference})
    "restarted",
    "no_matches",  # the directory had no match for the typed service
    "matches_intro",  # "is it one of these?"
    "preselected_intro",  # "is this the service?" for a deep link
    "summary_intro",
    "summary_line",  # {label}: {answer}
    "skipped",
    "edit_intro",
    "language_changed",
    "unknown_command",  # a slash word we do not know; {back} {restart} ... name the commands
)
#: Keys the engine uses when the dialogue defines them (a dialogue without them still runs):
#: "change_hint" ends the summary's text ({change}: the word, {n}: a row's number);
#: "current_value" quotes the answer a question being changed has now ({value});
#: "question_number" heads each question of a `numbered` dialogue ({n}, {total});
#: "missing_answers" is said when a submit finds questions on the path still unanswered.
OPTIONAL_MESSAGES: tuple[str, ...] = (
    "change_hint",
    "current_value",
    "question_number",
    "missing_answers",
)

#: Choice ids the engine adds itself; labels come from `Dialog.common_choices`.
SKIP, CONTINUE, NONE, BACK_TO_SUMMARY = "skip", "continue", "none", "summary"
#: Enough for any real conversation with edits; bounds what a looping client can store.
MAX_HISTORY = 200
#: Kinds that wait for an answer: `path()` stops at one not yet answered.
_ANSWERED_KINDS: frozenset[StepKind] = frozenset(("text", "choice", "lookup", "info"))
#: Translators whose command words `Engine._words` keeps (more than the catalogs' languages).
_MAX_TRANSLATORS = 64
#: Kinds where the conversation has stopped: nothing is offered.
_END_KINDS: frozenset[StepKind] = frozenset(("submitted", "cancelled", "ended"))


class _Model:
    """The bare object the machine steps when its `advance` trigger is fired, and its
    conditions read (`_Guard`). Turns do not fire it (`_next_step`); tests do, as the
    reference for which branch a step takes."""

    __slots__ = ("answers", "state", "switches")

    def __init__(self, step: str, answers: Answers, switches: Switches) -> None:
        self.state = step
        self.answers = answers
        self.switches = switches


@dataclass(frozen=True, slots=True)
class _Offer:
    """What the current step offers: choices (with their notes) and whether text is allowed."""

    choices: tuple[ChoiceDef, ...]
    accepts_text: bool


class Engine:
    def __init__(
        self,
        dialog: Dialog,
        languages: Sequence[tuple[str, str]] | None = None,
        switches: Mapping[str, bool] | None = None,
    ) -> None:
        """`switches`: the deployment's on/off facts that the dialogue's `Switch` conditions
        read (e.g. whether some email can be delivered); a switch not given is off."""
        missing = [k for k in REQUIRED_MESSAGES if k not in dialog.messages]
        if missing:
            raise ValueError(f"dialog lacks engine messages: {missing}")
        self.dialog = dialog
        self.switches: Switches = frozenset(name for name, on in (switches or {}).items() if on)
        self.languages = tuple(languages if languages is not None else dialog.languages)
        #: The `language` step's offer never changes: built once, not on every turn there.
        self._language_offer = _Offer(
            tuple(ChoiceDef(code, Text.raw(name)) for code, name in self.languages), False
        )
        self._steps = dialog.by_id
        #: The dialogue's steps of the kinds the engine moves to itself, if it has them.
        self._language_step = dialog.step_of_kind("language")
        self._summary_step = dialog.step_of_kind("summary")
        self._edit_step = dialog.step_of_kind("edit")
        self._submitted_step = dialog.step_of_kind("submitted")
        self._cancelled_step = dialog.step_of_kind("cancelled")
        self._ended_step = dialog.step_of_kind("ended")
        #: A numbered dialogue's questions (the steps that wait for an answer), in order.
        self._questions: dict[str, int] = (
            {
                s.id: n
                for n, s in enumerate(
                    (s for s in dialog.steps if s.kind in _ANSWERED_KINDS), start=1
                )
            }
            if dialog.numbered
            else {}
        )
        self.machine = Machine(
            model=None,
            states=[s.id for s in dialog.steps],
            initial=dialog.first_step,
            auto_transitions=False,
            send_event=True,
        )
        for step in dialog.steps:
            for branch in step.next:
                if branch.to not in self._steps:
                    raise ValueError(f"step {step.id!r} branches to unknown step {branch.to!r}")
                conditions: list[str | Callable[..., bool | None]] = (
                    [_Guard(branch.when)] if branch.when else []
                )
                self.machine.add_transition("advance", step.id, branch.to, conditions=conditions)
        #: `_words` per translator (the catalogs keep one translator per language).
        self._words_by_translator: dict[Translate, tuple[dict[str, str], str]] = {}
        #: The machine's own transition table, read by `_next_step`: (target, condition or
        #: None) per step, in the order the machine tries them.
        self._branches: dict[str, tuple[tuple[str, Condition | None], ...]] = {
            source: tuple((str(t.dest), _table_condition(t.conditions)) for t in transitions)
            for source, transitions in self.machine.events["advance"].transitions.items()
        }

    # ------------------------------------------------------------------ public API

    def start(
        self, locale: str, start_param: str | None = None, needs: Needs = NOTHING_OUTSIDE
    ) -> Turn:
        """A new conversation at the first step. A start parameter naming a directory
        location (a deep link) is offered for confirmation at the dialogue's lookup step."""
        state = ConversationState(step=self.dialog.first_step, locale=locale)
        if start_param and self.dialog.step_of_kind("lookup") is not None:
            found = needs.find_location(start_param)
            if found:
                state.scratch["preselected"] = [list(found)]
        return Turn(state, self.prompt(state))

    def handle(
        self,
        state: ConversationState,
        inbound: Inbound,
        translate: Translate,
        needs: Needs = NOTHING_OUTSIDE,
    ) -> Turn:
        """One turn. `needs` answers what a step asks of the outside (a lookup step's
        directory search; a submit's reference number and acknowledgement)."""
        state = state.copy()
        if inbound.kind == "start":
            if state.status == "active":
                return Turn(state, self.prompt(state))
            return Turn(state, self._after_end(state))
        if state.status != "active":
            return Turn(state, self._after_end(state))

        inbound = self.interpret(inbound, translate)
        kind, value = inbound.kind, inbound.value
        if kind == "start":
            return Turn(state, self.prompt(state))
        if kind == "command":
            return self._command(state, value, needs)

        step = self._steps[state.step]
        offer = self._offer(state)
        if kind == "text":
            row = parse_change(value, self._words(translate)[1])
            if row is not None and step.kind in ("summary", "edit"):
                return self._change_row(state, row)
            if row is not None and value.startswith("/"):
                return self._reprompt(state, _with_command_words(self._msg("unknown_command")))
            choice_id = self._match_typed(value, offer.choices, translate)
            if choice_id is not None:
                return self._choose(state, step, choice_id, needs, offer)
            if offer.accepts_text:
                return self._text(state, step, value, needs)
            return self._reprompt(state, self._msg("choose_one"))
        # A button press.
        if not any(c.id == value for c in offer.choices):
            if step.kind == "summary" and value in self._changeable(state.answers):
                # A row's own Change: the step id, straight to that answer.
                return self._change(state, value)
            return self._reprompt(state, self._msg("stale_choice"))
        return self._choose(state, step, value, needs, offer)

    def interpret(self, inbound: Inbound, translate: Translate) -> Inbound:
        """Typed text cleaned, and read as a command when it is only a command word (in
        English or the person's language); anything else unchanged. A command is never
        searched for as a service name."""
        if inbound.kind != "text":
            return inbound
        value = clean_text(inbound.value)
        words, change_word = self._words(translate)
        if parse_change(value, change_word) is not None:
            return Inbound("text", value)  # "change 3": the summary reads it (see `handle`)
        command = parse_command(value, words)
        if command is None:
            return Inbound("text", value)
        if command.name == START:
            return Inbound("start", command.argument)
        return Inbound("command", command.name)

    def _words(self, translate: Translate) -> tuple[dict[str, str], str]:
        """The command words (`command_words`) and the word for "change" in `translate`'s
        language, worked out once per translator (the catalogs keep one per language)."""
        found = self._words_by_translator.get(translate)
        if found is None:
            localised = ((c, translate(command_word(c))) for c in COMMANDS)
            found = (command_words(localised), translate(CHANGE_WORD))
            if len(self._words_by_translator) >= _MAX_TRANSLATORS:
                self._words_by_translator.clear()  # translators made per call: keep few
            self._words_by_translator[translate] = found
        return found

    def prompt(self, state: ConversationState) -> tuple[Outbound, ...]:
        """The messages that ask the current step's question (also used to resume); for a
        submitted conversation, the confirmation with its reference."""
        if state.status != "active" and not (
            state.status == "submitted" and state.step == self._submitted_step
        ):
            return self._after_end(state)
        step = self._steps[state.step]
        texts = list(self._prompt_texts(state, step))
        offer = self._offer(state)
        rows: tuple[SummaryRow, ...] = ()
        current = self._current_value(state, step)
        if step.kind == "summary":
            rows = self.summary_rows(state.answers)
            texts += [self._msg("summary_intro"), self._summary_text(rows)]
        elif current is not None and "current_value" in self.dialog.messages:
            texts.append(_with_param(self._msg("current_value"), "value", Text.raw(current)))
        number = self._questions.get(step.id)
        if number is not None and texts and "question_number" in self.dialog.messages:
            counter = self._msg("question_number")
            params = {**dict(counter.params), "n": number, "total": len(self._questions)}
            counter = Text(counter.msgid, tuple(sorted(params.items())))
            texts[-1] = Text.lines(counter, texts[-1])
        if not texts:
            texts = [Text.raw("")]
        input_kind = "text" if offer.accepts_text else ("choice" if offer.choices else "none")
        last = Outbound(
            texts[-1],
            offer.choices,
            input_kind,  # type: ignore[arg-type]
            summary=rows,
            value=current if offer.accepts_text else None,
        )
        out = [*(Outbound(t) for t in texts[:-1]), last]
        if step.links and -len(out) <= step.links_at < len(out):
            at = out[step.links_at]
            out[step.links_at] = replace(at, links=tuple(step.links))
        return tuple(out)

    def summary_rows(self, answers: Answers) -> tuple[SummaryRow, ...]:
        """One row per answer on the person's path that the summary shows, in path order:
        a choice by its label, a skipped question as skipped, typed text as typed."""
        rows: list[SummaryRow] = []
        for sid in self.path(answers):
            step = self._steps[sid]
            if step.summary_label is None or sid not in answers:
                continue
            shown = self._display_answer(step, answers[sid])
            rows.append(SummaryRow(sid, step.summary_label, shown, step.changeable))
        return tuple(rows)

    def path(self, answers: Answers) -> list[str]:
        """The steps the answers lead through, from the first step while each is answered."""
        seen: list[str] = []
        step_id: str | None = self.dialog.first_step
        while step_id is not None and step_id not in seen:
            seen.append(step_id)
            step = self._steps[step_id]
            if step.kind in _ANSWERED_KINDS and step_id not in answers:
                break
            step_id = self._next_step(step_id, answers)
        return seen

    def _next_step(self, step_id: str, answers: Answers) -> str | None:
        """Where `step_id` leads with these answers: the target of the first of its branches,
        in the machine's order, whose condition holds; None if none does."""
        for to, when in self._branches.get(step_id, ()):
            if when is None or when.evaluate(answers, self.switches):
                return to
        return None

    def _unanswered(self, answers: Answers) -> str | None:
        """The first question on the person's path still without an answer, when there is
        one before the summary: the path stops there (see `path`)."""
        last = self._steps[self.path(answers)[-1]]
        if last.kind in _ANSWERED_KINDS and last.id not in answers:
            return last.id
        return None

    def on_path_answers(self, answers: Answers) -> dict[str, Any]:
        """Answers of the steps still on the path; answers left behind by an edit drop out."""
        path = set(self.path(answers))
        return {k: v for k, v in answers.items() if k in path}

    # ------------------------------------------------------------------ commands

    def _command(
        self, state: ConversationState, command: str, needs: Needs = NOTHING_OUTSIDE
    ) -> Turn:
        if command == "start":
            return Turn(state, self.prompt(state))
        if command == "back":
            if not state.history:
                return self._reprompt(state, self._msg("cannot_go_back"))
            state.step = state.history.pop()
            state.scratch.pop("matches", None)
            return Turn(state, self.prompt(state))
        if command == "restart":
            locale = state.locale
            fresh = ConversationState(step=self.dialog.first_step, locale=locale)
            return Turn(fresh, (Outbound(self._msg("restarted")), *self.prompt(fresh)))
        if command == "help":
            step = self._steps[state.step]
            # The step's own advice first, then the commands (named in the person's words).
            general = Outbound(_with_command_words(self._msg("help")))
            advice = (Outbound(step.help),) if step.help else ()
            exit_note = needs.exit_help()
            exits = (Outbound(_with_command_words(exit_note)),) if exit_note else ()
            return Turn(state, (*advice, general, *exits, *self.prompt(state)))
        if command == "privacy":
            return self._reprompt(state, self._msg("privacy"))
        if command == "language":
            if self._language_step is not None and state.step != self._language_step:
                state.resume_step = state.step
                state.step = self._language_step
            return Turn(state, self.prompt(state))
        if command in ("cancel", "exit"):
            # Exit is cancel at once, for someone who may be overheard or watched: no
            # question first, and a reply that says nothing of what the chat was about.
            state.status = "cancelled"
            state.answers.clear()
            state.scratch.clear()
            state.history.clear()
            state.step = self._cancelled_step or state.step
            reason: Literal["cancelled", "exit"] = "cancelled" if command == "cancel" else "exit"
            said = self._msg("cancelled" if command == "cancel" else "exited")
            return Turn(state, (Outbound(said),), (ConversationClosed(reason),))
        # UNKNOWN, or anything else no channel should have sent: say what exists.
        return self._reprompt(state, _with_command_words(self._msg("unknown_command")))

    # ------------------------------------------------------------------ answers

    def _choose(
        self, state: ConversationState, step: Step, choice_id: str, needs: Needs, offer: _Offer
    ) -> Turn:
        echo = next((c.label for c in offer.choices if c.id == choice_id), None)
        if step.kind == "language":
            return self._set_language(state, choice_id, echo)
        if step.kind == "lookup":
            return self._pick_match(state, step, choice_id, echo)
        if step.kind == "edit":
            if choice_id == BACK_TO_SUMMARY:
                state.editing = False
                return self._goto(state, self._summary_step or state.step, echo=echo)
            state.editing = True
            return self._goto(state, choice_id, echo=echo)
        action = self._action(step, choice_id)
        if action == "submit":
            return self._submit(state, needs, echo)
        if action == "edit" and self._edit_step is not None:
            return self._goto(state, self._edit_step, echo=echo)
        if action in COMMANDS:  # e.g. the welcome step offers privacy and language as buttons
            return self._with_echo(self._command(state, str(action), needs), echo)
        exit_kind = step.exits.get(choice_id)
        if exit_kind == "end":
            state.status = "ended"
            state.answers.clear()
            state.history.clear()
            state.step = self._ended_step or state.step
            note = self._choice_note(step, choice_id, state.answers)
            out = [note] if note else []
            out.append(Outbound(self._msg("ended")))
            return Turn(state, tuple(out), (ConversationClosed("not_covered"),), echo)
        state.answers[step.id] = choice_id
        note = self._choice_note(step, choice_id, state.answers)
        return self._forward(state, [note] if note else [], echo, needs)

    def _text(self, state: ConversationState, step: Step, value: str, needs: Needs) -> Turn:
        echo = Text.raw(value)
        if not value:
            return self._reprompt(state, self._msg("empty_text"))
        if len(value) > step.max_length:
            reason = self.dialog.messages["too_long"]
            reason = Text(
                reason.msgid,
                (("length", len(value)), ("limit", step.max_length)),
                plural=reason.plural,
                n=step.max_length,
            )
            return self._reprompt(state, reason)
        if step.kind == "lookup":
            return self._search(state, step, value, needs, echo)
        if step.validate is not None:
            result = step.validate(value, state.answers)
            if isinstance(result, Invalid):
                return Turn(state, (Outbound(result.reason), *self.prompt(state)), echo=echo)
            stored = result.value
        else:
            stored = value
        state.answers[step.id] = stored
        return self._forward(state, [], echo, needs)

    def _search(
        self, state: ConversationState, step: Step, value: str, needs: Needs, echo: Text
    ) -> Turn:
        within = state.answers.get(step.search_within) if step.search_within else None
        matches = needs.search_directory(value, within)
        state.scratch.pop("preselected", None)
        if matches:
            state.scratch["matches"] = [list(m) for m in matches]
            state.scratch["typed"] = value
            return Turn(state, self.prompt(state), echo=echo)
        state.answers[step.id] = {"text": value, "location_id": None, "name": None}
        return self._forward(state, [Outbound(self._msg("no_matches"))], echo, needs)

    def _pick_match(
        self, state: ConversationState, step: Step, choice_id: str, echo: Text | None
    ) -> Turn:
        offered = state.scratch.get("matches") or state.scratch.get("preselected") or []
        typed = state.scratch.get("typed", "")
        if choice_id == NONE:
            if not typed:  # a declined deep link: ask for the name instead
                state.scratch.clear()
                return Turn(state, self.prompt(state), echo=echo)
            state.answers[step.id] = {"text": typed, "location_id": None, "name": None}
        else:
            chosen = next(m for m in offered if m[0] == choice_id)
            state.answers[step.id] = {
                "text": typed or chosen[1],
                "location_id": chosen[0],
                "name": chosen[1],
            }
        state.scratch.clear()
        return self._forward(state, [], echo)

    def _set_language(self, state: ConversationState, code: str, echo: Text | None) -> Turn:
        state.locale = code
        state.step = state.resume_step or self.dialog.first_step
        state.resume_step = None
        return Turn(
            state,
            (Outbound(self._msg("language_changed")), *self.prompt(state)),
            (LocaleChanged(code),),
            echo,
        )

    def _submit(
        self,
        state: ConversationState,
        needs: Needs,
        echo: Text | None,
        notes: Sequence[Outbound] = (),
    ) -> Turn:
        missing = self._unanswered(state.answers)
        if missing is not None:
            # Saved before a question was added (or before a switch came on): ask it now,
            # then come back to the summary past everything already answered.
            state.editing = True
            turn = self._goto(state, missing, echo=echo)
            said = self.dialog.messages.get("missing_answers")
            said_notes = (Outbound(said),) if said is not None else ()
            return Turn(turn.state, (*notes, *said_notes, *turn.outbound), echo=echo)
        answers = self.on_path_answers(state.answers)
        fields = self.dialog.build_report(answers)
        report: dict[str, Any] = {**fields, "locale": state.locale}
        if self.dialog.issues_reference:
            reference = needs.new_reference()
            if not reference:
                raise ValueError("the service must supply a reference number for a submit")
            report["reference"] = reference
            state.reference = reference
            # How the service will acknowledge the report ("email", "sms" or None): the
            # confirmation promises only what will really be sent.
            state.acknowledgement = needs.acknowledgement(fields)
        state.status = "submitted"
        state.step = self._submitted_step or state.step
        return Turn(state, (*notes, *self.prompt(state)), (ReportSubmitted(report),), echo)

    # ------------------------------------------------------------------ movement

    def _forward(
        self,
        state: ConversationState,
        notes: list[Outbound],
        echo: Text | None,
        needs: Needs = NOTHING_OUTSIDE,
    ) -> Turn:
        """Take the step's branch (`_next_step`); while editing, walk past steps that already
        have answers."""
        step_id, answers = state.step, state.answers
        while True:
            state.history.append(step_id)
            del state.history[:-MAX_HISTORY]
            to = self._next_step(step_id, answers)
            if to is None:
                raise ValueError(f"no branch out of step {step_id!r} for these answers")
            step_id = to
            nxt = self._steps[step_id]
            if not (state.editing and step_id in answers and nxt.kind != "summary"):
                break
        state.step = step_id
        if nxt.kind == "summary":
            state.editing = False
        if nxt.kind == "submitted":
            # A dialogue without a summary (a short survey) submits by branching here.
            return self._submit(state, needs, echo, notes)
        return Turn(state, (*notes, *self.prompt(state)), echo=echo)

    def _goto(self, state: ConversationState, step_id: str, *, echo: Text | None = None) -> Turn:
        state.history.append(state.step)
        del state.history[:-MAX_HISTORY]
        state.step = step_id
        state.scratch.pop("matches", None)
        return Turn(state, self.prompt(state), echo=echo)

    def _reprompt(self, state: ConversationState, reason: Text) -> Turn:
        return Turn(state, (Outbound(reason), *self.prompt(state)))

    @staticmethod
    def _with_echo(turn: Turn, echo: Text | None) -> Turn:
        return Turn(turn.state, turn.outbound, turn.events, echo)

    # ------------------------------------------------------------------ rendering

    def _prompt_texts(self, state: ConversationState, step: Step) -> Sequence[Text]:
        if step.kind == "lookup":
            if state.scratch.get("matches"):
                return (self._msg("matches_intro"),)
            if state.scratch.get("preselected"):
                return (self._msg("preselected_intro"),)
        if step.kind == "submitted":
            reference = state.reference or ""
            if step.receipt is not None:
                texts = step.receipt(Receipt(reference, state.acknowledgement))
            else:
                texts = step.prompt(state.answers) if callable(step.prompt) else step.prompt
            return tuple(_with_param(t, "reference", reference) for t in texts)
        if step.kind == "edit":
            return (self._msg("edit_intro"),)
        return tuple(step.prompt(state.answers) if callable(step.prompt) else step.prompt)

    def _offer(self, state: ConversationState) -> _Offer:
        step = self._steps[state.step]
        common = self.dialog.common_choices
        answers = state.answers
        if step.kind == "language":
            return self._language_offer
        if step.kind == "lookup":
            offered = state.scratch.get("matches") or state.scratch.get("preselected")
            if offered:
                choices = [ChoiceDef(m[0], Text.raw(m[2] if len(m) > 2 else m[1])) for m in offered]
                return _Offer((*choices, ChoiceDef(NONE, common[NONE])), True)
            return _Offer((), True)
        if step.kind == "edit":
            editable = [
                ChoiceDef(row.step, row.label)
                for row in self.summary_rows(answers)
                if row.changeable
            ]
            return _Offer((*editable, ChoiceDef(BACK_TO_SUMMARY, common[BACK_TO_SUMMARY])), False)
        if step.kind in _END_KINDS:
            return _Offer((), False)
        switches = self.switches
        choices = [c for c in step.choices if c.when is None or c.when.evaluate(answers, switches)]
        if step.kind == "info" and not choices:
            choices = [ChoiceDef(CONTINUE, common[CONTINUE])]
        if step.skippable is not None and step.skippable.evaluate(answers, switches):
            choices.append(ChoiceDef(SKIP, common[SKIP]))
        return _Offer(tuple(choices), step.kind == "text")

    def _summary_text(self, rows: Sequence[SummaryRow]) -> Text:
        """The rows as numbered lines ("1. Label: answer"), then how to change one: the
        summary for channels that show text only (Telegram, the terminal, older clients)."""
        line = self.dialog.messages["summary_line"]
        lines = [
            Text(line.msgid, (("answer", row.value), ("label", row.label), ("n", number)))
            for number, row in enumerate(rows, start=1)
        ]
        first = next((n for n, row in enumerate(rows, start=1) if row.changeable), None)
        hint = self.dialog.messages.get("change_hint")
        if hint is not None and first is not None:
            params = {**dict(hint.params), "change": CHANGE_WORD, "n": first}
            lines += [Text.raw(""), Text(hint.msgid, tuple(sorted(params.items())))]
        return Text.lines(*lines)

    def _changeable(self, answers: Answers) -> dict[str, SummaryRow]:
        return {row.step: row for row in self.summary_rows(answers) if row.changeable}

    def _change(self, state: ConversationState, step_id: str) -> Turn:
        """Straight from the summary to one answer; the answers after it are kept, so the
        person comes back to the summary once it is answered (see `_forward`)."""
        row = self._changeable(state.answers)[step_id]
        state.editing = True
        return self._goto(state, step_id, echo=row.label)

    def _change_row(self, state: ConversationState, number: int) -> Turn:
        """ "change 3": the third row of the summary, when it may be changed."""
        rows = self.summary_rows(state.answers)
        if not 1 <= number <= len(rows) or not rows[number - 1].changeable:
            return self._reprompt(state, self._msg("choose_one"))
        return self._change(state, rows[number - 1].step)

    def _current_value(self, state: ConversationState, step: Step) -> str | None:
        """While an answer is being changed, the answer a text question has now (None for
        a skipped one, a choice, or a lookup offering its matches)."""
        if not state.editing or step.kind not in ("text", "lookup"):
            return None
        if state.scratch.get("matches") or state.scratch.get("preselected"):
            return None
        answer = state.answers.get(step.id)
        if isinstance(answer, dict):  # a lookup: what the person typed
            answer = answer.get("text")
        if not isinstance(answer, str) or not answer or answer == SKIP:
            return None
        if any(c.id == answer for c in step.choices):  # a choice offered at a text step
            return None
        return answer

    def _display_answer(self, step: Step, value: Any) -> Text:
        if value == SKIP:
            return self._msg("skipped")
        if isinstance(value, dict):  # a directory lookup
            return Text.raw(str(value.get("name") or value.get("text") or ""))
        for choice in step.choices:
            if choice.id == value:
                return choice.label
        return Text.raw(str(value))

    @staticmethod
    def _action(step: Step, choice_id: str) -> ChoiceAction | None:
        return next((c.action for c in step.choices if c.id == choice_id), None)

    def _choice_note(self, step: Step, choice_id: str, answers: Answers) -> Outbound | None:
        """What is said right after a choice: its note with its links, when its
        `note_when` holds for the answers (this choice included)."""
        for c in step.choices:
            if c.id == choice_id and c.note:
                if c.note_when is not None and not c.note_when.evaluate(answers, self.switches):
                    return None
                return Outbound(c.note, links=tuple(c.links))
        return None

    def _after_end(self, state: ConversationState) -> tuple[Outbound, ...]:
        if state.status == "submitted":
            reference = state.reference or ""
            return (Outbound(_with_param(self._msg("already_submitted"), "reference", reference)),)
        return (Outbound(self._msg("ended")),)

    def _msg(self, key: str) -> Text:
        return self.dialog.messages[key]

    def _match_typed(
        self, typed: str, choices: Sequence[ChoiceDef], translate: Translate
    ) -> str | None:
        """A typed answer that names a choice: its number, its id, or its label."""
        if not choices or not typed:
            return None
        folded = fold(typed)
        if folded.isdigit() and 1 <= int(folded) <= len(choices):
            return choices[int(folded) - 1].id
        for choice in choices:
            if folded in (fold(choice.id), fold(translate(choice.label))):
                return choice.id
        return None


def command_word(command: str) -> Text:
    """The word for `command` in the person's language (its catalog names it)."""
    return COMMAND_WORDS[command]


def _with_command_words(text: Text) -> Text:
    """`text` with `{back}`, `{cancel}`... filled by the person's own command words."""
    params = dict(text.params)
    params.update({c: command_word(c) for c in COMMANDS})
    return Text(
        text.msgid, tuple(sorted(params.items())), text.plural, text.n, text.verbatim, text.context
    )


class _Guard:
    """A branch's condition as the machine calls it; keeps the condition value readable."""

    __slots__ = ("condition",)

    def __init__(self, condition: Condition) -> None:
        self.condition = condition

    def __call__(self, event: EventData) -> bool:
        model: _Model = event.model  # type: ignore[assignment]
        return self.condition.evaluate(model.answers, model.switches)


def _table_condition(conditions: Sequence[Any]) -> Condition | None:
    """A transition's conditions as the engine added them: none, or one `_Guard` that must
    hold. Anything else would make `_next_step` and firing the machine disagree."""
    if not conditions:
        return None
    if (
        len(conditions) > 1
        or not conditions[0].target
        or not isinstance(conditions[0].func, _Guard)
    ):
        raise TypeError(f"transition conditions the engine did not add: {conditions!r}")
    guard: _Guard = conditions[0].func
    return guard.condition


def _with_param(text: Text, name: str, value: str | Text) -> Text:
    params = dict(text.params)
    params[name] = value
    return Text(
        text.msgid, tuple(sorted(params.items())), text.plural, text.n, text.verbatim, text.context
    )


__all__ = ["REQUIRED_MESSAGES", "UNKNOWN", "Engine", "Event", "clean_text", "command_word"]
