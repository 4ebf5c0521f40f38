"""What an update means for us, decided without I/O so every case is easy to test.

Only private chats hold a conversation. Everything else is answered politely (a group) or
ignored (edits, membership changes), and nothing of it is stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from telegram import Chat, Message, Update

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


@dataclass(frozen=True, slots=True)
class UnsupportedAction:
    """A photo, voice note, sticker...: explain, change nothing."""

    chat_id: int
    language_code: str | None


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
        return TurnAction(message.chat.id, inbound_from_text(message.text), language)
    if _has_content(message):
        return UnsupportedAction(message.chat.id, language)
    return IgnoreAction("service message")


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
