"""What the engine asks of the world outside, as one small typed interface.

The engine stays pure (no I/O): the service passes an object with these methods, answered
from memory (the directory index is refreshed before a turn begins). The engine asks only
when a step of the right kind needs it, so nothing is fetched on a guess. Like hypercorn's
protocol cores, the core says what it needs; the caller decides how it is provided.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from bot.engine.types import Text

#: A directory match: (location id, name, label for a button).
Match: TypeAlias = Sequence[str]


class Needs(Protocol):
    def search_directory(self, typed: str, within: str | None) -> Sequence[Match]:
        """Directory matches for what was typed at a `lookup` step; `within` is the answer
        the step names as narrowing the search (e.g. a type of service), if any."""
        ...

    def find_location(self, location_id: str) -> Match | None:
        """The directory entry a start parameter (a deep link) names, if it exists."""
        ...

    def new_reference(self) -> str:
        """A fresh reference number, drawn when a report is submitted."""
        ...

    def acknowledgement(self, report: Mapping[str, Any]) -> str | None:
        """How the report will be acknowledged ("email", "sms" or None), so the confirmation
        promises only what will really be sent."""
        ...

    def exit_help(self) -> Text | None:
        """What the quick exit does and does not hide in the person's channel (it differs:
        a browser tab, a Telegram chat, a terminal), said after the general help; None where
        there is nothing to add. `{exit}` in it names the exit word."""
        ...


class NothingOutside:
    """`Needs` for a dialogue that asks nothing of the outside: any question is a bug."""

    def search_directory(self, typed: str, within: str | None) -> Sequence[Match]:
        raise ValueError("this engine was given no directory to search for a lookup step")

    def find_location(self, location_id: str) -> Match | None:
        return None

    def new_reference(self) -> str:
        raise ValueError("this engine was given no reference numbers for a submit")

    def acknowledgement(self, report: Mapping[str, Any]) -> str | None:
        return None

    def exit_help(self) -> Text | None:
        return None


NOTHING_OUTSIDE = NothingOutside()


@dataclass
class FixedNeeds:
    """`Needs` with fixed answers, for tests, benchmarks and tools that drive the engine
    without a directory: every search finds `matches`, every submit gets `reference`."""

    matches: Sequence[Match] = ()
    locations: Mapping[str, Match] = field(default_factory=dict)
    reference: str = "TEST-2345"
    acknowledge_by: str | None = None
    exit_note: Text | None = None
    #: What was searched for, in order (so a test can say nothing was).
    searched: list[tuple[str, str | None]] = field(default_factory=list)

    def search_directory(self, typed: str, within: str | None) -> Sequence[Match]:
        self.searched.append((typed, within))
        return self.matches

    def find_location(self, location_id: str) -> Match | None:
        return self.locations.get(location_id)

    def new_reference(self) -> str:
        return self.reference

    def acknowledgement(self, report: Mapping[str, Any]) -> str | None:
        return self.acknowledge_by

    def exit_help(self) -> Text | None:
        return self.exit_note


__all__ = ["NOTHING_OUTSIDE", "FixedNeeds", "Match", "Needs", "NothingOutside"]
