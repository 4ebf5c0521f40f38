"""The pure parts: splitting long texts, keyboards, and what an update means."""

from __future__ import annotations

import json

import pytest
from telegram import InlineKeyboardMarkup, Update

from bot.channels.telegram.delivery import payload_message
from bot.channels.telegram.render import build_keyboard, join_messages, split_text, utf16_len
from bot.channels.telegram.updates import (
    GroupAction,
    IgnoreAction,
    TurnAction,
    UnsupportedAction,
    classify,
    inbound_from_text,
)
from bot.engine.types import Inbound
from bot.intake.rendering import RenderedChoice, RenderedMessage
from bot.outbox.dispatcher import backoff


def test_a_short_text_is_one_part() -> None:
    assert split_text("Hello there.") == ["Hello there."]


def test_long_text_splits_at_paragraphs_then_lines_then_words() -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 300 for i in range(10)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    parts = split_text(text)
    assert len(parts) > 1
    assert all(utf16_len(p) <= 4096 for p in parts)
    assert all(p.startswith("Paragraph") for p in parts)  # cut between paragraphs
    assert " ".join(" ".join(parts).split()) == " ".join(text.split())


def test_a_line_without_breaks_splits_between_words() -> None:
    text = " ".join(f"w{i}" for i in range(3000))
    parts = split_text(text, limit=1000)
    assert all(len(p) <= 1000 for p in parts)
    assert " ".join(parts).split() == text.split()


def test_a_single_huge_word_is_cut_and_nothing_lost() -> None:
    text = "x" * 10_000
    parts = split_text(text)
    assert [len(p) for p in parts] == [4096, 4096, 1808]


def test_the_limit_counts_utf16_units() -> None:
    text = "😀" * 3000  # two UTF-16 units each
    parts = split_text(text)
    assert all(utf16_len(p) <= 4096 for p in parts)
    assert "".join(parts) == text


def test_short_labels_share_rows_and_long_ones_stand_alone() -> None:
    keyboard = build_keyboard(
        [
            RenderedChoice("yes", "Yes"),
            RenderedChoice("no", "No"),
            RenderedChoice("long", "A rather long label for one row"),
            RenderedChoice("a", "A"),
            RenderedChoice("x" * 65, "Too long an id"),
        ]
    )
    assert keyboard is not None
    # The Bot API's reply_markup, as python-telegram-bot reads it back.
    markup = InlineKeyboardMarkup.de_json(json.loads(keyboard), None)
    rows = [[(b.text, b.callback_data) for b in row] for row in markup.inline_keyboard]
    assert rows == [
        [("Yes", "yes"), ("No", "no")],
        [("A rather long label for one row", "long")],
        [("A", "a")],
    ]
    assert build_keyboard([]) is None


@pytest.mark.parametrize(
    ("text", "inbound"),
    [
        ("/start", Inbound("start", "")),
        ("/start 1-123456789", Inbound("start", "1-123456789")),
        ("/start@care_bot 1-123456789", Inbound("start", "1-123456789")),
        ("/start ../../etc/passwd", Inbound("start", "")),
        ("/start " + "a" * 65, Inbound("start", "")),
        ("/back", Inbound("command", "back")),
        ("/CANCEL@care_bot", Inbound("command", "cancel")),
        ("/language", Inbound("command", "language")),
        ("/unknown", Inbound("text", "/unknown")),
        ("Oak House, Leeds", Inbound("text", "Oak House, Leeds")),
        ("/", Inbound("text", "/")),
    ],
)
def test_text_to_inbound(text: str, inbound: Inbound) -> None:
    assert inbound_from_text(text) == inbound


def _update(**fields: object) -> Update:
    return Update.de_json({"update_id": 1, **fields}, None)


def _message(chat_type: str = "private", **content: object) -> dict[str, object]:
    return {
        "message_id": 5,
        "date": 0,
        "from": {"id": 7, "is_bot": False, "first_name": "Sam", "language_code": "cy"},
        "chat": {"id": 7 if chat_type == "private" else -7, "type": chat_type},
        **content,
    }


def test_classify_the_kinds_of_update() -> None:
    turn = classify(_update(message=_message(text="hello")))
    assert turn == TurnAction(7, Inbound("text", "hello"), "cy", message_id=5)
    photo = [{"file_id": "a", "file_unique_id": "b", "width": 1, "height": 1}]
    assert classify(_update(message=_message(photo=photo))) == UnsupportedAction(7, "cy", 5)
    sticker = {
        "file_id": "s",
        "file_unique_id": "t",
        "width": 1,
        "height": 1,
        "is_animated": False,
        "is_video": False,
        "type": "regular",
    }
    assert isinstance(classify(_update(message=_message(sticker=sticker))), UnsupportedAction)
    voice = {"file_id": "v", "file_unique_id": "w", "duration": 1}
    assert isinstance(classify(_update(message=_message(voice=voice))), UnsupportedAction)
    location = {"latitude": 51.5, "longitude": -0.1}
    assert isinstance(classify(_update(message=_message(location=location))), UnsupportedAction)
    assert classify(_update(message=_message("supergroup", text="hi"))) == GroupAction(-7, "cy")
    assert isinstance(
        classify(_update(edited_message=_message(text="x", edit_date=1))), IgnoreAction
    )


def test_classify_a_button_press() -> None:
    query = {
        "id": "q1",
        "from": {"id": 7, "is_bot": False, "first_name": "Sam"},
        "chat_instance": "c",
        "data": "poor",
        "message": _message(text="question"),
    }
    action = classify(_update(callback_query=query))
    assert action == TurnAction(7, Inbound("choice", "poor"), None, "q1", 5)
    no_data = {k: v for k, v in query.items() if k != "data"}
    assert classify(_update(callback_query=no_data)) == IgnoreAction(
        "button without data or message", "q1"
    )


def test_backoff_grows_and_is_capped() -> None:
    delays = [backoff(n, base=1.0, cap=60.0) for n in range(1, 12)]
    assert 0.8 <= delays[0] <= 1.0
    assert 6.4 <= delays[3] <= 8.0
    assert max(delays) <= 60.0


def test_a_turns_messages_join_in_order_with_their_buttons() -> None:
    joined = join_messages(
        [
            RenderedMessage("  First.  "),
            RenderedMessage(""),
            RenderedMessage("Pick.", (RenderedChoice("a", "A"),), "choice"),
            RenderedMessage("Or.", (RenderedChoice("b", "B"), RenderedChoice("a", "A")), "choice"),
        ]
    )
    assert joined == RenderedMessage(
        "First.\n\nPick.\n\nOr.", (RenderedChoice("a", "A"), RenderedChoice("b", "B")), "choice"
    )
    assert join_messages([]) == RenderedMessage("")


def test_both_payload_shapes_are_read_and_a_bad_one_refused() -> None:
    old = {"chat_id": 1, "message": {"text": "Hi", "choices": [{"id": "x", "label": "X"}]}}
    assert payload_message(old) == RenderedMessage("Hi", (RenderedChoice("x", "X"),))
    new = {"chat_id": 1, "messages": [{"text": "Hi"}, {"text": "There"}]}
    assert payload_message(new) == RenderedMessage("Hi\n\nThere")
    for bad in ({"chat_id": 1}, {"messages": "Hi"}, {"messages": [{"choices": []}]}):
        with pytest.raises((KeyError, TypeError, ValueError)):
            payload_message(bad)
