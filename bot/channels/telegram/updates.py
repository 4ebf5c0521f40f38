"""What an update means for us, decided without I/O so every case is easy to test.

Only private chats hold a conversation. Everything else is answered politely (a group) or
ignored (edits, membership changes), and nothing of it is stored.

The webhook reads the two common kinds of update (a message with text, a button press) from
the JSON itself (`classify_json`): python-telegram-bot's `Update.de_json` builds a tree of
objects costing a few hundred microseconds per update, of which `classify` reads a handful of
fields. Anything else, or anything not shaped as expected, goes through PTB and `classify`,
so the outcome is the same either way (tests/channels/telegram/test_telegram_lean_parse.py
compares the two on a corpus of updates).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from telegram import Bot, Chat, Message, Update

from bot.engine.commands import START, UNKNOWN, parse_command
from bot.engine.types import Inbound

#: Telegram deep-link payloads: https://core.telegram.org/bots/features#deep-linking
DEEP_LINK_PAYLOAD = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class TurnAction:
    """Run a turn of the chat's conversation."""

    chat_id: int
    inbound: Inbound
    language_code: str | None
    #: For a button press: the callback query to answer and the message whose keyboard goes.
    callback_query_id: str | None = None
    keyboard_message_id: int | None = None
    #: For typed text: the message's id in the chat, kept so the exit word can delete it.
    message_id: int | None = None


@dataclass(frozen=True, slots=True)
class UnsupportedAction:
    """A photo, voice note, sticker...: explain, change nothing (but keep its id, so the exit
    word deletes it too: a photo can say as much as words)."""

    chat_id: int
    language_code: str | None
    message_id: int | None = None


@dataclass(frozen=True, slots=True)
class GroupAction:
    """A message in a group or channel: say once that intake happens in a private chat."""

    chat_id: int
    language_code: str | None


@dataclass(frozen=True, slots=True)
class IgnoreAction:
    reason: str
    #: A button press we do not act on is still answered, so the client stops its spinner.
    callback_query_id: str | None = None


Action = TurnAction | UnsupportedAction | GroupAction | IgnoreAction


def classify(update: Update) -> Action:
    if update.callback_query is not None:
        return _callback(update)
    message = update.message
    if message is None:
        # Edited messages, channel posts, my_chat_member (blocked/unblocked) and the rest.
        return IgnoreAction("not a new message")
    language = message.from_user.language_code if message.from_user else None
    if message.chat.type != Chat.PRIVATE:
        if message.from_user is None or message.from_user.is_bot:
            return IgnoreAction("not from a person")
        return GroupAction(message.chat.id, language)
    if message.text is not None:
        return TurnAction(
            message.chat.id,
            inbound_from_text(message.text),
            language,
            message_id=message.message_id,
        )
    if _has_content(message):
        return UnsupportedAction(message.chat.id, language, message.message_id)
    return IgnoreAction("service message")


def read_update(data: dict[str, Any], bot: Bot) -> tuple[int, Action]:
    """The update id and what the update means. Raises ValueError (or whatever PTB raises)
    for something that is not a Telegram update."""
    update_id = data.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise ValueError("not an update")
    action = classify_json(data)
    if action is not None:
        return update_id, action
    update = Update.de_json(data, bot)
    if update is None:
        raise ValueError("not an update")
    return update.update_id, classify(update)


def classify_json(data: dict[str, Any]) -> Action | None:
    """`classify` for a private or group message with text and for a button press, read from
    the update's JSON; None for anything else (PTB then parses it)."""
    if len(data) != 2:
        return None
    message = data.get("message")
    if isinstance(message, dict):
        return _text_message_json(message)
    query = data.get("callback_query")
    if isinstance(query, dict):
        return _callback_json(query)
    return None


def _text_message_json(message: dict[str, Any]) -> Action | None:
    text = message.get("text")
    chat = message.get("chat")
    user = message.get("from")
    if not isinstance(text, str) or not isinstance(chat, dict):
        return None
    chat_id, chat_type = chat.get("id"), chat.get("type")
    if not _is_int(chat_id) or not isinstance(chat_type, str):
        return None
    if user is not None and not (isinstance(user, dict) and _is_int(user.get("id"))):
        return None
    language = _language(user)
    if language is False:
        return None
    assert isinstance(chat_id, int) and not isinstance(language, bool)
    if chat_type != Chat.PRIVATE:
        if user is None:
            return IgnoreAction("not from a person")
        is_bot = user.get("is_bot")
        if not isinstance(is_bot, bool):
            return None
        return IgnoreAction("not from a person") if is_bot else GroupAction(chat_id, language)
    message_id = message.get("message_id")
    if not _is_int(message_id):
        return None
    assert isinstance(message_id, int)
    return TurnAction(chat_id, inbound_from_text(text), language, message_id=message_id)


def _callback_json(query: dict[str, Any]) -> Action | None:
    query_id = query.get("id")
    user = query.get("from")
    data = query.get("data")
    carrier = query.get("message")
    if not isinstance(query_id, str) or not isinstance(user, dict) or not _is_int(user.get("id")):
        return None
    if data is not None and not isinstance(data, str):
        return None
    language = _language(user)
    if language is False:
        return None
    assert not isinstance(language, bool)
    if carrier is None:
        return IgnoreAction("button without data or message", query_id)
    if not isinstance(carrier, dict):
        return None
    chat = carrier.get("chat")
    message_id = carrier.get("message_id")
    if not isinstance(chat, dict) or not _is_int(message_id):
        return None
    chat_id, chat_type = chat.get("id"), chat.get("type")
    if not _is_int(chat_id) or not isinstance(chat_type, str):
        return None
    assert isinstance(chat_id, int) and isinstance(message_id, int)
    if data is None:
        return IgnoreAction("button without data or message", query_id)
    if chat_type != Chat.PRIVATE:
        return IgnoreAction("button outside a private chat", query_id)
    return TurnAction(
        chat_id,
        Inbound("choice", data),
        language,
        callback_query_id=query_id,
        keyboard_message_id=message_id,
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _language(user: object) -> str | bool | None:
    """The user's language_code; False when it is there but not a string (PTB decides)."""
    if not isinstance(user, dict):
        return None
    language = user.get("language_code")
    if language is None or isinstance(language, str):
        return language
    return False


def inbound_from_text(text: str) -> Inbound:
    """`/start [payload]` opens or resumes (a payload that is not a deep-link payload is
    dropped); everything else goes as typed text, which the engine reads with the same rule
    (`bot.engine.commands`) in the person's own language: command words, unknown commands
    and answers alike."""
    command = parse_command(text)
    if command is not None and command.name == START:
        payload = command.argument
        return Inbound("start", payload if DEEP_LINK_PAYLOAD.fullmatch(payload) else "")
    if command is not None and command.name != UNKNOWN:
        return Inbound("command", command.name)
    return Inbound("text", text)


def _callback(update: Update) -> Action:
    query = update.callback_query
    assert query is not None
    carrier = query.message
    if query.data is None or carrier is None:
        return IgnoreAction("button without data or message", query.id)
    if carrier.chat.type != Chat.PRIVATE:
        return IgnoreAction("button outside a private chat", query.id)
    return TurnAction(
        carrier.chat.id,
        Inbound("choice", query.data),
        query.from_user.language_code,
        callback_query_id=query.id,
        keyboard_message_id=carrier.message_id,
    )


def _has_content(message: Message) -> bool:
    """Anything a person sent that is not text (as opposed to a service message)."""
    return any(
        (
            message.effective_attachment is not None,
            message.caption is not None,
            message.location is not None,
            message.venue is not None,
            message.contact is not None,
            message.poll is not None,
            message.dice is not None,
            message.story is not None,
            message.game is not None,
        )
    )
