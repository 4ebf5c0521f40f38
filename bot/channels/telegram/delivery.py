"""Sending rendered messages to Telegram and sorting its errors into retry or give up.

The outbox dispatcher (bot/outbox/dispatcher.py) calls `TelegramDelivery` for each claimed
outbox row: one turn's reply, whose messages go as ONE Telegram message (split only over
Telegram's length limit), so a person gets one notification per turn and the chat's rate
limit is spent once. Rows written before that change carry a single "message" and are sent
as they were. The same sender serves the few direct, non-durable messages (group notice,
"I can only read text"). Nothing here logs message text.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import logging
import warnings
from typing import Any

from telegram import Bot
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.warnings import PTBDeprecationWarning

from bot.channels.telegram.render import (
    BUTTONS_ONLY_TEXT,
    build_keyboard,
    join_messages,
    split_text,
)
from bot.channels.telegram.request import call_unparsed
from bot.intake.rendering import TAPPED_MESSAGE_ID, RenderedMessage
from bot.outbox.dispatcher import Outcome, backoff
from bot.ports import ChatMessageIds, OutboxMessage
from bot.ratelimit import Pacer

log = logging.getLogger(__name__)

TOPIC = "telegram.send"
#: The Bot API's `link_preview_options` turning previews off, as the JSON text a form carries
#: (as the keyboard: `render.build_keyboard`).
NO_PREVIEW = '{"is_disabled":true}'


def retry_after_seconds(error: RetryAfter) -> float:
    """The wait Telegram asked for, in seconds. PTB 22 warns on reading `retry_after` until
    it becomes a timedelta; the warning is about a type change we handle both ways."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    if isinstance(value, dtm.timedelta):
        return value.total_seconds()
    return float(value)


def payload_message(payload: dict[str, Any]) -> RenderedMessage:
    """The one message to send for an outbox row: a turn's "messages" joined, or the single
    "message" of a row written before replies were joined. Raises KeyError, TypeError or
    ValueError on a malformed payload."""
    if "messages" in payload:
        items = payload["messages"]
        if not isinstance(items, list):
            raise TypeError("messages is not a list")
        return join_messages([RenderedMessage.from_record(item) for item in items])
    return RenderedMessage.from_record(payload["message"])


class TelegramDelivery:
    """Sends one outbox row (a turn's reply, as one message) to its chat.

    A long text goes as several parts with the keyboard on the last. Parts already sent are
    remembered in memory per outbox id, so a retry in this process does not repeat them.
    The reply to a tap takes the tapped message's buttons away as it goes (`send`).
    """

    def __init__(self, bot: Bot, limiter: Pacer, *, backoff_cap: float = 300.0) -> None:
        self.bot = bot
        self.limiter = limiter
        self.backoff_cap = backoff_cap
        self._parts_sent: dict[int, int] = {}
        #: The chat's ids of the parts sent so far, per outbox id (kept on delivery).
        self._ids_sent: dict[int, list[int]] = {}

    async def __call__(self, message: OutboxMessage) -> Outcome:
        assert message.id is not None
        if "delete" in message.payload:
            return await self._delete(message)
        outcome = await self._send(message)
        if outcome.status != "retry":
            self._parts_sent.pop(message.id, None)
            self._ids_sent.pop(message.id, None)
        return outcome

    async def _delete(self, message: OutboxMessage) -> Outcome:
        """The exit word: delete the chat's messages (at most 100 ids a row, as the Bot API
        takes). Telegram skips ids it cannot find; what it refuses becomes a dead letter."""
        try:
            chat_id = int(message.payload["chat_id"])
            ids = [int(i) for i in message.payload["delete"]]
        except (KeyError, TypeError, ValueError):
            return Outcome.failed("malformed_payload")
        if not ids:
            return Outcome.done("deleted")
        try:
            await self.bot.delete_messages(chat_id, ids)
        except TelegramError as error:
            return self.classify(error, message.attempts)
        return Outcome.done("deleted")

    async def _send(self, message: OutboxMessage) -> Outcome:
        assert message.id is not None
        try:
            chat_id = int(message.payload["chat_id"])
            rendered = payload_message(message.payload)
            raw_tapped = message.payload.get(TAPPED_MESSAGE_ID)
            tapped = None if raw_tapped is None else int(raw_tapped)
        except (KeyError, TypeError, ValueError):
            return Outcome.failed("malformed_payload")
        ids = self._ids_sent.setdefault(message.id, [])
        since: float | None = None
        if message.created_at is not None:  # waiting since its commit, on the pacer's clock
            age = (dtm.datetime.now(dtm.UTC) - message.created_at).total_seconds()
            since = self.limiter.clock() - max(0.0, age)
        try:
            sent = await self.send(
                chat_id,
                rendered,
                skip_parts=self._parts_sent.get(message.id, 0),
                ids=ids,
                since=since,
                tapped=tapped,
            )
        except _Progress as progress:
            self._parts_sent[message.id] = progress.sent
            return self.classify(progress.error, message.attempts)
        conversation_id = message.payload.get("conversation_id")
        kept = ChatMessageIds(
            "telegram",
            str(chat_id),
            tuple(ids),
            conversation_id if isinstance(conversation_id, str) else None,
        )
        return Outcome.done("sent" if sent else "empty", sent=kept if ids else None)

    async def send(
        self,
        chat_id: int,
        rendered: RenderedMessage,
        *,
        skip_parts: int = 0,
        ids: list[int] | None = None,
        since: float | None = None,
        tapped: int | None = None,
    ) -> int:
        """Send the parts of `rendered` after the first `skip_parts`; returns how many were
        sent in all, and adds the chat's id of each to `ids`. A Telegram error is raised as
        `_Progress` carrying the count so far. `since`: when the message began to wait, on
        the pacer's clock (an outbox row: its commit), so that the longest waiting goes
        first (`Pacer.acquire`). `tapped`: the message whose button this reply answers; its
        buttons go beside the first part this call sends (`_clear_buttons`)."""
        keyboard = build_keyboard(rendered.choices)
        text = rendered.text_with_links().strip()
        if not text and keyboard is None:
            return 0
        parts = split_text(text) if text else [BUTTONS_ONLY_TEXT]
        for index in range(skip_parts, len(parts)):
            last = index == len(parts) - 1
            await self.limiter.acquire(str(chat_id), since)
            # The sent message's id is all we read of it (`call_unparsed`).
            sending = call_unparsed(
                self.bot,
                "sendMessage",
                chat_id=chat_id,
                text=parts[index],
                reply_markup=keyboard if last else None,
                link_preview_options=NO_PREVIEW,
            )
            try:
                if tapped is not None and index == skip_parts:
                    sent, _ = await asyncio.gather(sending, self._clear_buttons(chat_id, tapped))
                else:
                    sent = await sending
            except TelegramError as error:
                raise _Progress(index, error) from error
            if ids is not None:
                ids.append(int(sent["message_id"]))
        return len(parts)

    async def _clear_buttons(self, chat_id: int, message_id: int) -> None:
        """The buttons of an answered question go as its reply arrives, so an old tap is less
        likely (and harmless anyway: the engine answers a stale choice by asking the current
        question). Beside the reply's send, not after it: the reply's slot is held for one
        round trip, not two. No token of its own: Telegram counts messages sent against its
        limit, and this rides on the reply's. Done with the reply, not after each tap: the
        edit is retried with the row, and the webhook's turn is not followed by a call of its
        own (BENCHMARKS.md). Best effort: a retry of the reply may repeat it, which Telegram
        refuses harmlessly ("message is not modified"), as it refuses a message too old to
        edit. The edited message Telegram returns is not parsed; without `reply_markup` the
        edit removes the keyboard."""
        try:
            await call_unparsed(
                self.bot, "editMessageReplyMarkup", chat_id=chat_id, message_id=message_id
            )
        except TelegramError as error:
            log.debug("telegram: keyboard not removed (%s)", type(error).__name__)

    def classify(self, error: TelegramError, attempts: int) -> Outcome:
        """Rate limits and network trouble are retried; a chat we cannot reach is given up."""
        if isinstance(error, RetryAfter):
            return Outcome.retry("rate_limited", retry_after_seconds(error))
        if isinstance(error, Forbidden):
            return Outcome.failed("blocked")
        if isinstance(error, BadRequest):  # before NetworkError: it is a subclass
            if "chat not found" in str(error).lower():
                return Outcome.failed("chat_not_found")
            return Outcome.failed("bad_request")
        if isinstance(error, ChatMigrated):
            return Outcome.failed("chat_migrated")
        if isinstance(error, InvalidToken):
            log.error("the Bot API rejected the token; check INTAKE_TELEGRAM_TOKEN")
            return Outcome.retry("invalid_token", backoff(attempts, cap=self.backoff_cap))
        if isinstance(error, NetworkError):  # includes TimedOut
            return Outcome.retry("network", backoff(attempts, cap=self.backoff_cap))
        return Outcome.retry("telegram_error", backoff(attempts, cap=self.backoff_cap))


class _Progress(Exception):
    def __init__(self, sent: int, error: TelegramError) -> None:
        super().__init__(type(error).__name__)
        self.sent = sent
        self.error = error
