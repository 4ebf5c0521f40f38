"""Conditions as values: what a branch, a choice or a skip depends on, readable by tools.

Modelled on aiogram-dialog's `F` magic filters: `Answer("experience").is_in("poor", "mixed")`
is a value that can be evaluated against the answers AND described in words, so the diagram
generator reads each branch's condition instead of guessing it from source code. Conditions
combine with `&`, `|` and `~`.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any, TypeAlias

Answers: TypeAlias = Mapping[str, Any]
#: The names of the switches that are on (see `Switch`); none unless the engine is given some.
Switches: TypeAlias = Set[str]
NO_SWITCHES: Switches = frozenset()

#: The engine's own `skip` choice id: a skipped answer is not a given one.
_SKIPPED = "skip"


class Condition(ABC):
    """Something that holds, or not, for the answers so far."""

    __slots__ = ()

    @abstractmethod
    def evaluate(self, answers: Answers, switches: Switches = NO_SWITCHES) -> bool:
        """Whether it holds for these answers, with these switches on."""

    @abstractmethod
    def describe(self) -> str:
        """The condition in words, for diagrams and error messages."""

    def __and__(self, other: Condition) -> Condition:
        return _All(self, other)

    def __or__(self, other: Condition) -> Condition:
        return _Any(self, other)

    def __invert__(self) -> Condition:
        return _Not(self)

    def __str__(self) -> str:
        return self.describe()


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to one step (or, with `field`, one field of a structured answer such as a
    directory match); build conditions from it."""

    step: str
    field: str | None = None

    def value(self, answers: Answers) -> Any:
        raw = answers.get(self.step)
        if self.field is None:
            return raw
        return raw.get(self.field) if isinstance(raw, Mapping) else None

    @property
    def name(self) -> str:
        return self.step if self.field is None else f"{self.step}.{self.field}"

    def is_in(self, *values: str) -> Condition:
        return _IsIn(self, tuple(values))

    def equals(self, value: str) -> Condition:
        return _IsIn(self, (value,))

    def is_given(self) -> Condition:
        """Answered with something: not empty and not skipped."""
        return _Given(self)

    def matches(self, pattern: str, meaning: str) -> Condition:
        """Answered with text in which the regular expression `pattern` is found; `meaning`
        says what it looks for, in words (for diagrams)."""
        return _Matches(self, re.compile(pattern), meaning)


@dataclass(frozen=True, slots=True)
class _IsIn(Condition):
    answer: Answer
    values: tuple[str, ...]

    def evaluate(self, answers: Answers, switches: Switches = NO_SWITCHES) -> bool:
        return self.answer.value(answers) in self.values

    def describe(self) -> str:
        if len(self.values) == 1:
            return f"{self.answer.name} = {self.values[0]}"
        return f"{self.answer.name} in {', '.join(self.values)}"


@dataclass(frozen=True, slots=True)
class _Given(Condition):
    answer: Answer

    def evaluate(self, answers: Answers, switches: Switches = NO_SWITCHES) -> bool:
        value = self.answer.value(answers)
        return bool(value) and value != _SKIPPED

    def describe(self) -> str:
        return f"{self.answer.name} given"


@dataclass(frozen=True, slots=True)
class _Matches(Condition):
    answer: Answer
    pattern: re.Pattern[str]
    meaning: str

    def evaluate(self, answers: Answers, switches: Switches = NO_SWITCHES) -> bool:
        value = self.answer.value(answers)
        return isinstance(value, str) and self.pattern.search(value) is not None

    def describe(self) -> str:
        return f"{self.answer.name} has {self.meaning}"


@dataclass(frozen=True, slots=True)
class Switch(Condition):
    """Holds when the switch `name` is on: something about the deployment, not the person
    (e.g. whether a kind of email can be delivered at all). The engine is given the switches
    that are on when it is built, so a question can be offered only where it can be kept."""

    name: str

    def evaluate(self, answers: Answers, switches: Switches = NO_SWITCHES) -> bool:
        return self.name in switches

    def describe(self) -> str:
        return f"switch {self.name} on"


@dataclass(frozen=True, slots=True)
class _Always(Condition):
    def evaluate(self, answers: Answers, switches: Switches = NO_SWITCHES) -> bool:
        return True

    def describe(self) -> str:
        return "always"


@dataclass(frozen=True, slots=True)
class _All(Condition):
    first: Condition
    second: Condition

    def evaluate(self, answers: Answers, switches: Switches = NO_SWITCHES) -> bool:
        return self.first.evaluate(answers, switches) and self.second.evaluate(answers, switches)

    def describe(self) -> str:
        return f"{_grouped(self.first, self)} and {_grouped(self.second, self)}"


@dataclass(frozen=True, slots=True)
class _Any(Condition):
    first: Condition
    second: Condition

    def evaluate(self, answers: Answers, switches: Switches = NO_SWITCHES) -> bool:
        return self.first.evaluate(answers, switches) or self.second.evaluate(answers, switches)

    def describe(self) -> str:
        return f"{_grouped(self.first, self)} or {_grouped(self.second, self)}"


@dataclass(frozen=True, slots=True)
class _Not(Condition):
    inner: Condition

    def evaluate(self, answers: Answers, switches: Switches = NO_SWITCHES) -> bool:
        return not self.inner.evaluate(answers, switches)

    def describe(self) -> str:
        inner = self.inner.describe()
        return f"not ({inner})"


def _grouped(part: Condition, whole: Condition) -> str:
    """A part in brackets when it mixes `and` and `or` with the whole."""
    mixed = isinstance(part, _All | _Any) and type(part) is not type(whole)
    return f"({part.describe()})" if mixed else part.describe()


#: Holds for any answers (e.g. a question that may always be skipped).
ALWAYS: Condition = _Always()

__all__ = ["ALWAYS", "NO_SWITCHES", "Answer", "Answers", "Condition", "Switch", "Switches"]
