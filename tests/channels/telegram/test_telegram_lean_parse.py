"""The webhook's own reading of common updates against python-telegram-bot's.

`classify_json` reads a text message or a button press from the JSON; for everything else it
answers None and PTB parses. On every update of the corpus, what it decides must equal what
`classify(Update.de_json(...))` decides: the same action with the same fields.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from telegram import Bot, Update

from bench.updates import conversation_updates, prompts
from bot.channels.telegram.updates import classify, classify_json, read_update
from tests.channels.telegram.tg_support import TelegramServer, User, is_welcome
from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI

BOT = Bot(TOKEN)
_ids = itertools.count(500)


def user(**extra: Any) -> dict[str, Any]:
    return {"id": 77, "is_bot": False, "first_name": "Sam", "language_code": "cy", **extra}


def private() -> dict[str, Any]:
    return {"id": 77, "type": "private", "first_name": "Sam"}


def group(kind: str = "supergroup") -> dict[str, Any]:
    return {"id": -1001, "type": kind, "title": "A group"}


def message(text: str | None = "hello", chat: dict[str, Any] | None = None, **extra: Any) -> Any:
    body: dict[str, Any] = {
        "message_id": next(_ids),
        "from": user(),
        "chat": chat or private(),
        "date": 1_732_400_000,
        **extra,
    }
    if text is not None:
        body["text"] = text
        if text.startswith("/"):
            length = len(text.split(" ", 1)[0])
            body["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
    return {"update_id": next(_ids), "message": body}


def callback(
    data: str | None = "poor", chat: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    query: dict[str, Any] = {
        "id": str(next(_ids)),
        "from": user(),
        "chat_instance": "42",
        "message": {
            "message_id": 31,
            "from": {"id": 123, "is_bot": True, "first_name": "Care feedback"},
            "chat": chat or private(),
            "date": 1_732_400_000,
            "text": "How was it?",
            "reply_markup": {"inline_keyboard": [[{"text": "Poor", "callback_data": "poor"}]]},
        },
        **extra,
    }
    if data is not None:
        query["data"] = data
    return {"update_id": next(_ids), "callback_query": query}


def without(update: dict[str, Any], *path: str) -> dict[str, Any]:
    changed = copy.deepcopy(update)
    node = changed
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return changed


LEAN: dict[str, dict[str, Any]] = {
    "text": message("My mum's care home"),
    "unicode text": message("Gofal 👩‍⚕️ ‌ da\nail linell"),
    "empty-looking text": message(" "),
    "start": message("/start"),
    "start with payload": message("/start abc_DEF-1"),
    "start with a bad payload": message("/start not a payload!"),
    "start addressed to the bot": message("/start@care_feedback_bot"),
    "a known command": message("/help"),
    "an unknown command": message("/frobnicate now"),
    "a command word in Welsh": message("yn ôl"),
    "no language code": without(message("hi"), "message", "from", "language_code"),
    "group text from a person": message("hi all", chat=group()),
    "basic group text": message("hi all", chat=group("group")),
    "channel-ish group text from a bot": message(
        "beep", chat=group(), **{"from": {"id": 5, "is_bot": True, "first_name": "B"}}
    ),
    "group text without a sender": without(message("anon", chat=group()), "message", "from"),
    "button": callback(),
    "button in a group": callback(chat=group()),
    "button without data": callback(data=None),
    "button on an inaccessible message": callback(
        message={"message_id": 31, "chat": private(), "date": 0}
    ),
    "button without a message (inline)": without(callback(), "callback_query", "message"),
}

FALLBACK: dict[str, dict[str, Any]] = {
    "edited message": {"update_id": next(_ids), "edited_message": message("x")["message"]},
    "photo": message(
        None, photo=[{"file_id": "a", "file_unique_id": "b", "width": 1, "height": 1}]
    ),
    "photo with caption": message(
        None,
        caption="look",
        photo=[{"file_id": "a", "file_unique_id": "b", "width": 1, "height": 1}],
    ),
    "sticker": message(
        None,
        sticker={
            "file_id": "s",
            "file_unique_id": "u",
            "type": "regular",
            "width": 1,
            "height": 1,
            "is_animated": False,
            "is_video": False,
        },
    ),
    "location": message(None, location={"latitude": 51.5, "longitude": -0.1}),
    "service message": message(None, chat=group(), new_chat_members=[user()]),
    "my_chat_member": {
        "update_id": next(_ids),
        "my_chat_member": {
            "chat": private(),
            "from": user(),
            "date": 1_732_400_000,
            "old_chat_member": {"status": "member", "user": user()},
            "new_chat_member": {"status": "kicked", "user": user(), "until_date": 0},
        },
    },
    "channel post": {
        "update_id": next(_ids),
        "channel_post": {
            "message_id": 3,
            "chat": {"id": -100, "type": "channel", "title": "News"},
            "date": 1_732_400_000,
            "text": "news",
        },
    },
    "a chat id that is not a number": message("hi", chat={"id": "77", "type": "private"}),
    "a language code that is not a string": message("hi", **{"from": user(language_code=5)}),
}


def ptb(update: dict[str, Any]) -> Any:
    parsed = Update.de_json(copy.deepcopy(update), BOT)
    assert parsed is not None
    return classify(parsed)


@pytest.mark.parametrize("name", sorted(LEAN))
def test_the_common_updates_are_read_without_ptb_and_mean_the_same(name: str) -> None:
    update = LEAN[name]
    lean = classify_json(copy.deepcopy(update))
    assert lean is not None, name
    assert lean == ptb(update)
    assert read_update(copy.deepcopy(update), BOT) == (update["update_id"], lean)


@pytest.mark.parametrize("name", sorted(FALLBACK))
def test_other_updates_fall_back_to_ptb(name: str) -> None:
    update = FALLBACK[name]
    assert classify_json(copy.deepcopy(update)) is None
    assert read_update(copy.deepcopy(update), BOT) == (update["update_id"], ptb(update))


def test_a_whole_conversation_of_real_shaped_updates_means_the_same() -> None:
    """The benchmark's conversation: /start, typed answers and taps on the bot's questions
    with their real texts and keyboards."""
    updates = conversation_updates(4242, prompts())
    assert {next(iter(set(u) - {"update_id"})) for u in updates} == {"message", "callback_query"}
    for update in updates:
        lean = classify_json(copy.deepcopy(update))
        assert lean is not None
        assert lean == ptb(update)


@pytest.mark.parametrize(
    "data",
    [
        {"update_id": "1", "message": message("hi")["message"]},
        {"update_id": True, "message": message("hi")["message"]},
        {"message": message("hi")["message"]},
    ],
)
def test_something_that_is_not_an_update_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="not an update"):
        read_update(data, BOT)


async def test_the_webhook_runs_text_and_taps_without_ptb_parsing_and_the_rest_with_it(
    tg: TelegramServer,
    make_user: Callable[..., User],
    fake_api: FakeTelegramAPI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The running webhook: a text message and a button press are handled with PTB's
    `Update.de_json` unusable; an edited message still goes through it."""
    parsed: list[dict[str, Any]] = []
    original = Update.de_json

    def counting(data: dict[str, Any], bot: Any = None) -> Update | None:
        parsed.append(data)
        return original(data, bot)

    monkeypatch.setattr(Update, "de_json", counting)
    person = make_user(tg)
    await person.say("/start")
    assert is_welcome(person.texts()[-1])
    await person.tap("start")
    assert parsed == []
    edited = {"update_id": 99_001, "edited_message": person.message("changed")["message"]}
    assert await tg.post(edited) == 200
    assert [update["update_id"] for update in parsed] == [99_001]
