"""Long polling for development: the same handler as the webhook, one update at a time.

The offset moves past an update only after its turn committed, so a failed update is asked
for again (the inbound log makes the repeat harmless). A database outage is waited out; an
update that keeps failing for another reason is skipped after a few tries, as Telegram
itself gives up on a webhook update in the end, so one bad update cannot stop the bot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from telegram import Bot, Update
from telegram.error import Conflict, InvalidToken, TelegramError

from bot.outbox.dispatcher import backoff
from bot.ports import StorageError

log = logging.getLogger(__name__)

MAX_TRIES_PER_UPDATE = 3


class Poller:
    def __init__(
        self,
        bot: Bot,
        handle: Callable[[Update], Awaitable[None]],
        *,
        allowed_updates: Sequence[str],
        timeout: int = 30,
        retry_cap: float = 30.0,
    ) -> None:
        self.bot = bot
        self.handle = handle
        self.allowed_updates = list(allowed_updates)
        self.timeout = timeout
        self.retry_cap = retry_cap
        self.offset: int | None = None

    async def run(self) -> None:
        await self._call_until_done(lambda: self.bot.delete_webhook(drop_pending_updates=False))
        failures = 0
        while True:
            try:
                updates = await self.bot.get_updates(
                    offset=self.offset,
                    timeout=self.timeout,
                    allowed_updates=self.allowed_updates,
                )
            except (Conflict, InvalidToken, TelegramError) as error:
                failures += 1
                log.warning("telegram polling: getUpdates failed (%s)", type(error).__name__)
                await asyncio.sleep(backoff(failures, cap=self.retry_cap))
                continue
            failures = 0
            for update in updates:
                await self._handle(update)
                self.offset = update.update_id + 1

    async def _handle(self, update: Update) -> None:
        tries = 0
        while True:
            try:
                await self.handle(update)
                return
            except StorageError as error:
                tries += 1
                log.warning(
                    "telegram polling: update %s waits for the database (%s)",
                    update.update_id,
                    type(error).__name__,
                )
            except Exception as error:
                tries += 1
                log.error(
                    "telegram polling: update %s failed with %s (try %d)",
                    update.update_id,
                    type(error).__name__,
                    tries,
                )
                if tries >= MAX_TRIES_PER_UPDATE:
                    log.error("telegram polling: update %s skipped", update.update_id)
                    return
            await asyncio.sleep(backoff(tries, cap=self.retry_cap))

    async def _call_until_done(self, call: Callable[[], Awaitable[object]]) -> None:
        tries = 0
        while True:
            try:
                await call()
                return
            except TelegramError as error:
                tries += 1
                log.warning("telegram polling: setup call failed (%s)", type(error).__name__)
                await asyncio.sleep(backoff(tries, cap=self.retry_cap))
