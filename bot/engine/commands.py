"""The one rule that turns typed text into a command, used by every channel.

A message is a command when it is ONLY a command word: `/cancel`, `cancel`, ` Cancel! `,
or the word in the person's own language (each catalog names its words for the commands
under the gettext context `COMMAND_WORD_CONTEXT`). Longer text that merely contains the word
is an answer. A slash word we do not know (`/stop`, a bare `/`) is an unknown command, so the
engine can say which commands exist instead of taking it as an answer. `/start [payload]`
opens or resumes a conversation (Telegram's deep links).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bot.engine.text import fold
from bot.engine.types import COMMANDS, C, Text

#: The gettext context of the command words: pgettext("command word", "cancel").
COMMAND_WORD_CONTEXT = "command word"
#: Each catalog names the word a person types for each command in its language (one word or
#: a short phrase); English is accepted everywhere as well.
COMMAND_WORDS: dict[str, Text] = {
    "back": C("command word", "back"),
    "restart": C("command word", "restart"),
    "help": C("command word", "help"),
    "privacy": C("command word", "privacy"),
    "language": C("command word", "language"),
    "cancel": C("command word", "cancel"),
    "exit": C("command word", "exit"),
}
START = "start"
UNKNOWN = "unknown"
#: "change 3" (or `/change 3`, or the word in the person's language and a number) at the
#: summary: change the answer on row 3. Not a global command: only the summary has rows.
CHANGE = "change"
CHANGE_WORD: Text = C("command word", "change")

#: `/word`, an optional `@botname` (as Telegram clients send in groups), optional arguments.
_SLASH = re.compile(r"/(?P<word>[^\s@/]*)(?:@\w+)?(?:\s+(?P<rest>.*))?", re.DOTALL)


@dataclass(frozen=True, slots=True)
class TypedCommand:
    """`name` is one of `COMMANDS`, `START` or `UNKNOWN`; `argument` is `/start`'s payload."""

    name: str
    argument: str = ""


def command_words(localised: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    """Folded word -> command: the English words, then (command, word in the person's
    language) pairs. English always works."""
    words = {command: command for command in COMMANDS}
    for command, word in localised:
        folded = fold(word)
        if folded and command in COMMANDS:
            words.setdefault(folded, command)
    return words


_ENGLISH = command_words()
#: A word, then a number (any script's digits), nothing else.
_NUMBERED = re.compile(r"/?(?P<word>\D+?)\s*(?P<number>\d{1,4})")


def parse_change(text: str, localised_word: str = "") -> int | None:
    """The row number `text` asks to change ("change 3", "/change 3", "Zmień 3"), or None.
    `localised_word`: the word for "change" in the person's language; English always works."""
    numbered = _NUMBERED.fullmatch(text.strip().rstrip(".!"))
    if numbered is None:
        return None
    word = fold(numbered["word"])
    if word != CHANGE and not (localised_word and word == fold(localised_word)):
        return None
    return int(numbered["number"])


def parse_command(text: str, words: Mapping[str, str] = _ENGLISH) -> TypedCommand | None:
    """The command `text` is, or None when it is an answer. `words` from `command_words`."""
    stripped = text.strip()
    if stripped.startswith("/"):
        slash = _SLASH.fullmatch(stripped)
        if slash is not None and (slash["word"] or not slash["rest"]):
            word = fold(slash["word"])
            if word == START:
                return TypedCommand(START, (slash["rest"] or "").strip())
            command = words.get(word)
            # `/cancel now` is still cancel; `/stop` and a bare `/` are unknown commands.
            return TypedCommand(command or UNKNOWN)
        return None  # "/path/to/a file", "/ 12 Main Street": an answer
    command = words.get(fold(stripped))
    return TypedCommand(command) if command else None
