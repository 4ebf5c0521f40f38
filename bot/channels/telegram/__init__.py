"""The Telegram channel: `setup(app)` adds it to the aiohttp application.

- webhook mode (production): POST /telegram/webhook on our own server, acknowledged only
  after the turn is committed; the webhook is registered at startup when
  INTAKE_TELEGRAM_PUBLIC_URL is set.
- polling mode (development): a background getUpdates loop feeding the same handler.
- replies: the service writes each turn's reply to the outbox with the turn, as one row; an
  outbox dispatcher per worker sends it in order per chat as one Telegram message (split
  only over 4096 characters), at least once: a crash between a successful send and
  recording it resends that reply.

Modules: `updates` (what an update means), `handler` (the turn), `webhook`, `polling`,
`delivery` (sending and Telegram's errors), `render` (splitting, keyboards), `client` (Bot).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from telegram import Bot, BotCommand, Update
from telegram.error import InvalidToken, TelegramError

from bot.appkeys import SERVICE, SETTINGS
from bot.channels.telegram.client import bot_id, build_bot
from bot.channels.telegram.delivery import TOPIC, TelegramDelivery
from bot.channels.telegram.handler import UpdateHandler
from bot.channels.telegram.polling import Poller
from bot.channels.telegram.render import split_text
from bot.channels.telegram.updates import Action
from bot.channels.telegram.webhook import PATH, make_webhook_view
from bot.config import ConfigError, Settings
from bot.engine.types import T, Text
from bot.intake.service import IntakeService
from bot.outbox.dispatcher import OutboxDispatcher
from bot.ratelimit import Pacer

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ("message", "callback_query", "my_chat_member")
#: What Telegram accepts as a webhook secret token.
SECRET_FORMAT = re.compile(r"[A-Za-z0-9_-]{1,256}")
COMMANDS: tuple[tuple[str, Text], ...] = (
    ("start", T("Start, or show the question we are on")),
    ("back", T("Go back one question")),
    ("restart", T("Start again")),
    ("help", T("How this works")),
    ("privacy", T("How we use what you tell us")),
    ("language", T("Change the language")),
    ("cancel", T("Stop and keep nothing")),
    ("exit", T("Leave at once and delete this chat's messages")),
)
SETUP_ATTEMPTS = 3


@dataclass(slots=True)
class TelegramOptions:
    """Knobs for tests and tuning; production uses the defaults."""

    #: Run the outbox dispatcher in this process (tests switch it off to simulate a crash).
    run_dispatcher: bool = True
    dispatcher_poll_interval: float = 1.0
    #: Chats whose next reply is in hand at the same time. A reply waiting for the send limit
    #: costs only a coroutine, and the limiter serves the replies in hand longest waiting
    #: first, so this bounds how many chats a burst is shared fairly across (a reply not in
    #: hand waits for a claim, oldest first). At 30 a second the last of 256 waits about
    #: 8.5 s for its turn: well within the claim's 30 s lease, after which another worker
    #: would send it too.
    concurrency: int = 256
    #: Telegram's bulk limit is about 30 messages a second per bot. Only sendMessage spends
    #: it: answering a button and removing an answered keyboard (beside the reply to the
    #: tap, on its token) are not messages sent.
    rate_per_second: float = 30.0
    #: Messages that may go at once before the rate applies (None: one second's worth).
    rate_burst: float | None = None
    #: Telegram's per-chat limit is about one message a second, with short bursts allowed.
    per_chat_rate: float = 1.0
    per_chat_burst: float = 3.0
    backoff_cap: float = 300.0
    polling_timeout: int = 30
    group_notice_interval: float = 600.0


@dataclass(slots=True)
class TelegramChannel:
    """What the channel creates at startup; `None` until then."""

    options: TelegramOptions = field(default_factory=TelegramOptions)
    bot: Bot | None = None
    handler: UpdateHandler | None = None
    dispatcher: OutboxDispatcher | None = None
    poller: Poller | None = None

    async def handle(self, update: Update) -> None:
        if self.handler is None:
            raise RuntimeError("the Telegram channel has not started")
        await self.handler.handle(update)

    async def handle_action(self, update_id: int, action: Action) -> dict[str, Any] | None:
        """The webhook's entry: the update already read (`updates.read_update`); returns the
        method call to answer with, if any (`UpdateHandler.handle_action`)."""
        if self.handler is None:
            raise RuntimeError("the Telegram channel has not started")
        return await self.handler.handle_action(update_id, action, answer_in_response=True)


TELEGRAM = web.AppKey("telegram_channel", TelegramChannel)


def setup(app: web.Application, options: TelegramOptions | None = None) -> TelegramChannel:
    """Add the Telegram channel. Webhook mode without a secret is refused: anyone could
    then post fake updates as any user."""
    settings = app[SETTINGS]
    if not settings.telegram_token:
        raise ConfigError("INTAKE_TELEGRAM_TOKEN is not set")
    channel = TelegramChannel(options or TelegramOptions())
    app[TELEGRAM] = channel
    if settings.telegram_mode == "webhook":
        secret = settings.telegram_webhook_secret
        if not secret:
            raise ConfigError(
                "INTAKE_TELEGRAM_WEBHOOK_SECRET must be set in webhook mode (or set "
                "INTAKE_TELEGRAM_MODE=polling for development)"
            )
        if not SECRET_FORMAT.fullmatch(secret):
            raise ConfigError(
                "INTAKE_TELEGRAM_WEBHOOK_SECRET may only use A-Z, a-z, 0-9, _ and -, "
                "1 to 256 characters (Telegram's rule)"
            )

        def current_bot() -> Bot:
            if channel.bot is None:
                raise RuntimeError("the Telegram channel has not started")
            return channel.bot

        app.router.add_post(
            PATH,
            make_webhook_view(
                secret=secret,
                max_body_bytes=settings.max_body_bytes,
                bot=current_bot,
                handle=lambda: channel.handle_action,
            ),
        )
    app.cleanup_ctx.append(_lifetime)
    return channel


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    """Runs after the composition root's own context (appended before `setup` is called),
    so the service exists."""
    channel = app[TELEGRAM]
    options = channel.options
    settings = app[SETTINGS]
    service = app[SERVICE]
    assert settings.telegram_token
    bot = build_bot(settings)
    await _initialize(bot)
    limiter = Pacer(
        options.rate_per_second,
        options.rate_burst,
        per_key_rate=options.per_chat_rate,
        per_key_burst=options.per_chat_burst,
    )
    delivery = TelegramDelivery(bot, limiter, backoff_cap=options.backoff_cap)
    dispatcher = OutboxDispatcher(
        service.storage.dispatcher_storage(),
        TOPIC,
        delivery,
        poll_interval=options.dispatcher_poll_interval,
        concurrency=options.concurrency,
    )
    channel.bot = bot
    channel.dispatcher = dispatcher
    channel.handler = UpdateHandler(
        service,
        bot,
        delivery,
        scope=f"telegram:{bot_id(settings.telegram_token)}",
        dispatcher=dispatcher,
        group_notice_interval=options.group_notice_interval,
    )
    if options.run_dispatcher:
        dispatcher.start()
    poll_task: asyncio.Task[None] | None = None
    if settings.telegram_mode == "polling":
        channel.poller = Poller(
            bot, channel.handle, allowed_updates=ALLOWED_UPDATES, timeout=options.polling_timeout
        )
        poll_task = asyncio.create_task(channel.poller.run(), name="telegram-polling")
    elif settings.telegram_public_url:
        await _register_webhook(bot, settings)
    await _set_commands(bot, service)
    try:
        yield
    finally:
        if poll_task is not None:
            poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poll_task
        await dispatcher.stop()
        await channel.handler.close()
        await bot.shutdown()


async def _initialize(bot: Bot) -> None:
    """getMe: a rejected token stops startup; an unreachable API does not (sending works
    without it; only the bot's username, for the group note's link, stays unknown)."""
    try:
        await bot.initialize()
    except InvalidToken:
        # PTB's message quotes the token: do not let it reach the logs.
        raise ConfigError("INTAKE_TELEGRAM_TOKEN was rejected by the Bot API") from None
    except TelegramError as error:
        log.warning("telegram: getMe failed at startup (%s); continuing", type(error).__name__)


async def _register_webhook(bot: Bot, settings: Settings) -> None:
    assert settings.telegram_public_url
    url = settings.telegram_public_url.rstrip("/") + PATH
    for attempt in range(1, SETUP_ATTEMPTS + 1):
        try:
            await bot.set_webhook(
                url=url,
                secret_token=settings.telegram_webhook_secret,
                allowed_updates=list(ALLOWED_UPDATES),
                drop_pending_updates=False,
            )
            log.info("telegram: webhook registered at %s", url)
            return
        except TelegramError as error:
            log.warning(
                "telegram: setWebhook failed (%s), attempt %d", type(error).__name__, attempt
            )
            await asyncio.sleep(attempt)
    log.error("telegram: could not register the webhook; updates arrive only if it already was")


async def _set_commands(bot: Bot, service: IntakeService) -> None:
    """The command menu in English, and in each language whose catalog translates all of it
    (a half-translated menu reads worse than an English one)."""
    catalogs = service.catalogs
    english = [BotCommand(name, catalogs.render(text, "en")) for name, text in COMMANDS]
    menus: list[tuple[list[BotCommand], str | None]] = [(english, None)]
    for locale in catalogs.locales:
        local = [BotCommand(name, catalogs.render(text, locale)) for name, text in COMMANDS]
        translated = all(
            a.description != b.description for a, b in zip(local, english, strict=True)
        )
        if translated and len(locale) == 2:
            menus.append((local, locale))
    for commands, language in menus:
        try:
            await bot.set_my_commands(commands, language_code=language)
        except TelegramError as error:
            log.warning("telegram: setMyCommands failed (%s)", type(error).__name__)


__all__ = [
    "ALLOWED_UPDATES",
    "TELEGRAM",
    "TelegramChannel",
    "TelegramOptions",
    "setup",
    "split_text",
]
