"""Rendered messages to Telegram's shapes: text parts under the length limit, inline keyboards.

Text is sent without a parse mode, so nothing a person typed (echoed in a summary) can be
read as markup and nothing needs escaping.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot import jsonenc
from bot.intake.rendering import RenderedChoice, RenderedMessage

log = logging.getLogger(__name__)

#: Telegram's limit for a message text, counted in UTF-16 code units.
TEXT_LIMIT = 4096
#: Telegram's limit for callback data, in bytes.
CALLBACK_DATA_LIMIT = 64
#: Labels up to this many characters share a keyboard row (two per row); longer ones get a
#: row each so phones do not cut them off.
SHORT_LABEL = 20
#: Telegram rejects an empty text; a message that only carries buttons gets this.
BUTTONS_ONLY_TEXT = "…"


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _prefix_within(text: str, limit: int) -> int:
    """The number of characters of `text` whose UTF-16 length fits in `limit`."""
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return index
    return len(text)


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Split a long text into parts of at most `limit` UTF-16 units, preferring to cut between
    paragraphs, then lines, then words; a single overlong word is cut where it must be."""
    if limit < 2:
        raise ValueError("limit too small")
    parts: list[str] = []
    rest = text.strip()
    while utf16_len(rest) > limit:
        window = rest[: _prefix_within(rest, limit)]
        head, tail = window, rest[len(window) :]
        for separator, earliest in (("\n\n", limit // 4), ("\n", limit // 4), (" ", 1)):
            cut = window.rfind(separator)
            # Also cut at a separator just past the window ("word<limit> next").
            if rest[len(window) : len(window) + len(separator)] == separator:
                cut = len(window)
            if cut >= earliest:
                head, tail = window[:cut], rest[cut + len(separator) :]
                break
        head = head.rstrip()
        if head:
            parts.append(head)
        rest = tail.lstrip()
    if rest:
        parts.append(rest)
    return parts


def join_messages(messages: Sequence[RenderedMessage]) -> RenderedMessage:
    """A turn's messages as one: texts in order with a blank line between (each with its
    links as plain "Label: https://..." lines), and the buttons of every message that has
    any, in order (in practice only the last one has), each choice id once."""
    texts = [text for text in (m.text_with_links().strip() for m in messages) if text]
    choices: list[RenderedChoice] = []
    seen: set[str] = set()
    for message in messages:
        for choice in message.choices:
            if choice.id not in seen:
                seen.add(choice.id)
                choices.append(choice)
    return RenderedMessage(
        "\n\n".join(texts), tuple(choices), messages[-1].input if messages else "none"
    )


def build_keyboard(choices: Sequence[RenderedChoice]) -> str | None:
    """One button per choice, callback data = choice id. Short labels go two to a row.

    The Bot API's `reply_markup` for an inline keyboard, as the JSON text a form carries,
    built directly: python-telegram-bot's `InlineKeyboardMarkup`, turned into a dict and
    then JSON by its request path, was about a third of a reply's CPU in the client
    (BENCHMARKS.md). None when no choice can be a button."""
    rows: list[list[dict[str, str]]] = []
    waiting: dict[str, str] | None = None
    for choice in choices:
        if len(choice.id.encode("utf-8")) > CALLBACK_DATA_LIMIT:
            # Cannot be a button; the engine still accepts the label or number typed.
            log.warning("choice id longer than %d bytes left off the keyboard", CALLBACK_DATA_LIMIT)
            continue
        button = {"text": choice.label or choice.id, "callback_data": choice.id}
        if len(choice.label) > SHORT_LABEL:
            if waiting is not None:
                rows.append([waiting])
                waiting = None
            rows.append([button])
        elif waiting is not None:
            rows.append([waiting, button])
            waiting = None
        else:
            waiting = button
    if waiting is not None:
        rows.append([waiting])
    return jsonenc.dumps({"inline_keyboard": rows}).decode() if rows else None
