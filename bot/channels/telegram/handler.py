"""One update in, one committed turn out: the function both the webhook and polling feed.

The turn and its replies (written to the outbox) commit together inside the service; this
handler returns only after that, so the webhook can answer 200 knowing nothing is lost.
What follows the commit here (answering a button press when polling, a polite note in a
group) is best effort and runs in the background: a failure there loses nothing that
matters, and it must not delay Telegram's acknowledgement. The buttons of a tapped message
go with the reply, from the outbox (`delivery.TelegramDelivery`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import Counter
from collections.abc import Coroutine
from typing import Any

from telegram import Bot, Update
from telegram.error import TelegramError

from bot import metrics
from bot.channels.telegram.delivery import TOPIC, TelegramDelivery
from bot.channels.telegram.updates import (
    Action,
    GroupAction,
    IgnoreAction,
    TurnAction,
    UnsupportedAction,
    classify,
)
from bot.engine.types import T, Text
from bot.intake.rendering import RenderedMessage
from bot.intake.service import IntakeService
from bot.outbox.dispatcher import OutboxDispatcher
from bot.ports import Channel, StorageError

log = logging.getLogger(__name__)

CHANNEL: Channel = "telegram"
UNSUPPORTED = T("I can only read typed text. Please type your answer.")
FAILED = T(
    "Sorry, something went wrong on our side. Your earlier answers are kept. Please try again."
)
GROUP_NOTICE = T(
    "I only work in a private chat, so that what you tell me stays private. "
    "Please send me a message directly."
)


class UpdateHandler:
    def __init__(
        self,
        service: IntakeService,
        bot: Bot,
        sender: TelegramDelivery,
        *,
        scope: str,
        dispatcher: OutboxDispatcher | None = None,
        group_notice_interval: float = 600.0,
    ) -> None:
        self.service = service
        self.bot = bot
        self.sender = sender
        self.scope = scope
        #: This process's sender of the outbox: a turn's reply is claimed for it in the turn's
        #: transaction and handed to it after the commit.
        self.dispatcher = dispatcher
        self.group_notice_interval = group_notice_interval
        self._group_noticed: dict[int, float] = {}
        self._background: set[asyncio.Task[None]] = set()
        #: Updates given up on ("failed"): for logs and metrics.
        self.counters: Counter[str] = Counter()

    async def handle(self, update: Update) -> None:
        """An update parsed by PTB (polling); see `handle_action`."""
        await self.handle_action(update.update_id, update)

    async def handle_action(
        self, update_id: int, update: Update | Action, *, answer_in_response: bool = False
    ) -> dict[str, Any] | None:
        """Raises StorageError only: the database is unavailable, so the caller must not
        acknowledge the update (Telegram retries it). Any other failure is a bug that a retry
        would repeat forever: it is logged (no bodies), counted, and the person is told that
        something went wrong; the update counts as handled and the chat stays usable. The
        webhook passes what the update means, read from its JSON (`updates.read_update`).

        With `answer_in_response` (the webhook), a button press is not answered by a Bot API
        call: the answer is returned, as the body of the webhook's response, where Telegram
        performs the method it names (one request fewer per tap; its outcome is unknown, as
        it was to the best-effort call)."""
        action: Action | None = None
        try:
            action = classify(update) if isinstance(update, Update) else update
            if isinstance(action, TurnAction):
                await self._turn(update_id, action)
                return self._answer(action.callback_query_id, answer_in_response)
            elif isinstance(action, UnsupportedAction):
                await self._unsupported(action)
            elif isinstance(action, GroupAction):
                self._group(action)
            elif isinstance(action, IgnoreAction) and action.callback_query_id:
                return self._answer(action.callback_query_id, answer_in_response)
        except StorageError:
            raise
        except Exception as error:
            self.counters["failed"] += 1
            metrics.record_failed_turn("telegram")
            # The traceback without the exception's message, which could quote what was typed.
            log.error(
                "telegram: update %s failed with %s; not retried\n%s",
                update_id,
                type(error).__name__,
                "".join(traceback.format_tb(error.__traceback__)),
            )
            if isinstance(action, TurnAction):
                answer = self._answer(action.callback_query_id, answer_in_response)
                await self._explain(action.chat_id, action.language_code, FAILED)
                return answer
        return None

    def _answer(self, callback_query_id: str | None, in_response: bool) -> dict[str, Any] | None:
        """Answer a button press (Telegram shows a spinner until then): in the webhook's
        response (returned), or by a call in the background."""
        if callback_query_id is None:
            return None
        if in_response:
            return {"method": "answerCallbackQuery", "callback_query_id": callback_query_id}
        self._spawn(self._answer_callback(callback_query_id))
        return None

    async def close(self, grace_seconds: float = 5.0) -> None:
        """Let background calls finish (or give up on them) before the Bot shuts down."""
        if not self._background:
            return
        _done, pending = await asyncio.wait(set(self._background), timeout=grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # ------------------------------------------------------------------ cases

    async def _turn(self, update_id: int, action: TurnAction) -> None:
        """The reply is claimed in the turn's transaction when this process's dispatcher has
        a free slot, and handed to it after the commit: it goes at once, with no claim
        between the commit and the send (the profile's largest wait after the HTTP client).
        Otherwise it waits for the dispatcher's next claim, woken here."""
        dispatcher = self.dispatcher
        reserved = dispatcher is not None and dispatcher.reserve()
        try:
            reply = await self.service.handle_for_channel_key(
                CHANNEL,
                str(action.chat_id),
                action.inbound,
                message_id=str(update_id),
                scope=self.scope,
                locale_hints=(action.language_code,),
                outbox_topic=TOPIC,
                chat_message_id=action.message_id,
                tapped_message_id=action.keyboard_message_id,
                claim_for=dispatcher.lease_seconds if dispatcher and reserved else None,
            )
        except BaseException:
            if dispatcher is not None and reserved:
                dispatcher.release()
            raise
        if dispatcher is not None:
            # The reply's ordering key (the chat): behind the chat's reply in flight here,
            # that reply's settle claims it, and the loop need not be woken for it.
            key = str(action.chat_id)
            if reserved and reply.replayed:
                dispatcher.release()
            elif reserved:
                dispatcher.hand_over(reply.claimed, key)
            elif not reply.replayed:
                dispatcher.wake(key)

    async def _unsupported(self, action: UnsupportedAction) -> None:
        if action.message_id is not None:
            # Before the note, in the update's own handling: StorageError leaves the update
            # unacknowledged, so Telegram sends it again and the id is not lost.
            await self.service.keep_chat_messages(CHANNEL, str(action.chat_id), [action.message_id])
        await self._explain(action.chat_id, action.language_code, UNSUPPORTED)

    async def _explain(self, chat_id: int, language_code: str | None, note: Text) -> None:
        """Say `note` in the person's language and show the current question again; the
        conversation is not touched."""
        locale = self.service.catalogs.negotiate(language_code)
        current: RenderedMessage | None = None
        try:
            view = await self.service.view_for_channel_key(CHANNEL, str(chat_id))
            if view is not None:
                locale = view.locale
                current = view.messages[-1] if view.messages and not view.done else None
        except Exception as error:  # best effort: the note goes out anyway
            log.warning("telegram: could not load the current question (%s)", type(error).__name__)
        messages = [RenderedMessage(self.service.catalogs.render(note, locale))]
        if current is not None:
            messages.append(current)
        self._spawn(self._send(chat_id, messages, keep=True))

    def _group(self, action: GroupAction) -> None:
        """Nothing is stored for a group; a per-process memory keeps the note from repeating."""
        now = time.monotonic()
        last = self._group_noticed.get(action.chat_id)
        if last is not None and now - last < self.group_notice_interval:
            return
        if len(self._group_noticed) > 10_000:
            self._group_noticed = {
                chat: at
                for chat, at in self._group_noticed.items()
                if now - at < self.group_notice_interval
            }
        self._group_noticed[action.chat_id] = now
        locale = self.service.catalogs.negotiate(action.language_code)
        username = self._username()
        if username:
            link = f"https://t.me/{username}?start="
            notice = T(
                "I only work in a private chat, so that what you tell me stays private. "
                "Please send me a message directly: {link}",
                link=link,
            )
            text = self.service.catalogs.render(notice, locale)
        else:
            text = self.service.catalogs.render(GROUP_NOTICE, locale)
        self._spawn(self._send(action.chat_id, [RenderedMessage(text)]))

    # ------------------------------------------------------------------ best-effort calls

    def _username(self) -> str | None:
        try:
            return self.bot.username
        except RuntimeError:  # getMe has not succeeded yet
            return None

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send(
        self, chat_id: int, messages: list[RenderedMessage], *, keep: bool = False
    ) -> None:
        """Send outside a turn (notes that change nothing). With `keep` (a private chat), the
        sent messages' ids are kept like a turn's replies, so the exit word deletes them."""
        ids: list[int] = []
        for message in messages:
            try:
                await self.sender.send(chat_id, message, ids=ids)
            except Exception as error:
                log.info("telegram: direct message not sent (%s)", _name(error))
                break
        if keep and ids:
            try:
                await self.service.keep_chat_messages(CHANNEL, str(chat_id), ids)
            except StorageError:
                log.warning("telegram: ids of a note not kept (storage unavailable)")

    async def _answer_callback(self, query_id: str) -> None:
        try:
            await self.bot.answer_callback_query(query_id)
        except TelegramError as error:  # e.g. "query is too old" after a retry
            log.debug("telegram: callback query not answered (%s)", type(error).__name__)


def _name(error: BaseException) -> str:
    cause = getattr(error, "error", None)
    return type(cause).__name__ if isinstance(cause, BaseException) else type(error).__name__
