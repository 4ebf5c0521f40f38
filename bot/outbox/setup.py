"""Wiring of outgoing messages into the aiohttp application (called by the composition root).

Picks the email backend from configuration (GOV.UK Notify when INTAKE_NOTIFY_API_KEY is set,
else SMTP when INTAKE_SMTP_URL is, else none: a clear log line says email is off and the chat
then promises no email), builds the routes and runs one dispatcher per worker for every topic
but Telegram's (the Telegram channel runs its own), woken on PostgreSQL by NOTIFY. Both claim,
settle and listen through `Storage.dispatcher_storage()`, apart from the turns' connections.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from bot.appkeys import SERVICE, SETTINGS
from bot.outbox.config import DeliverySettings
from bot.outbox.dispatcher import OutboxDispatcher
from bot.outbox.email import EmailSender, NotifySender, SmsSender, SmtpEmailSender
from bot.outbox.routes import Routes
from bot.outbox.webhook import WebhookSender

log = logging.getLogger(__name__)


@dataclass
class DeliveryOptions:
    """Knobs for tests: poll often, or not run the dispatcher in this process."""

    run_dispatcher: bool = True
    poll_interval: float = 1.0
    concurrency: int = 16
    #: The first retry's delay in seconds (doubling after each failure, with jitter).
    retry_base: float = 2.0


@dataclass
class Delivery:
    options: DeliveryOptions = field(default_factory=DeliveryOptions)
    routes: Routes | None = None
    dispatcher: OutboxDispatcher | None = None


DELIVERY = web.AppKey("delivery", Delivery)


def email_sender(settings: DeliverySettings) -> EmailSender | None:
    if settings.notify_api_key:
        assert settings.notify_template_email
        if settings.smtp is not None:
            log.info("email: GOV.UK Notify is configured; INTAKE_SMTP_URL is not used")
        return NotifySender(
            settings.notify_api_key,
            settings.notify_template_email,
            sms_template_id=settings.notify_template_sms,
            base_url=settings.notify_base_url,
        )
    if settings.smtp is not None:
        assert settings.email_from
        return SmtpEmailSender(settings.smtp, settings.email_from)
    return None


def setup(app: web.Application, options: DeliveryOptions | None = None) -> Delivery:
    from bot.outbox.web import add_routes

    delivery = Delivery(options or DeliveryOptions())
    app[DELIVERY] = delivery
    add_routes(app)
    app.cleanup_ctx.append(_lifetime)
    return delivery


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    from bot.intake.reports import ReportFormatter
    from dialogs.intake import INTAKE

    delivery = app[DELIVERY]
    settings = app[SETTINGS].delivery
    service = app[SERVICE]
    email = email_sender(settings)
    if email is None:
        log.warning(
            "email is off: no acknowledgement or alert emails will be sent, and the chat will "
            "not promise one (set INTAKE_SMTP_URL or INTAKE_NOTIFY_API_KEY)"
        )
    else:
        log.info("email: sending through %s", email.backend)
    sms: SmsSender | None = email if isinstance(email, NotifySender) else None
    session = aiohttp.ClientSession()
    formatter = ReportFormatter(INTAKE, service.catalogs)
    delivery.routes = Routes(
        service.storage,
        settings,
        service.catalogs,
        formatter.record,
        email=email,
        sms=sms if settings.sms_enabled else None,
        alert_webhook=(
            WebhookSender(session, settings.alert_webhook_url, settings.alert_webhook_secret)
            if settings.alert_webhook_url and settings.alert_webhook_secret
            else None
        ),
        handoff=(
            WebhookSender(session, settings.handoff_url, settings.handoff_secret)
            if settings.handoff_url and settings.handoff_secret
            else None
        ),
    )
    delivery.dispatcher = OutboxDispatcher(
        service.storage.dispatcher_storage(),
        delivery.routes.table(retry_base=delivery.options.retry_base),
        poll_interval=delivery.options.poll_interval,
        concurrency=delivery.options.concurrency,
        max_attempts=settings.outbox_max_attempts,
        # Longer than any one send may take (SMTP and Notify time out at 30 s), so a slow
        # send is never claimed by a second worker meanwhile.
        lease_seconds=120.0,
        listen=True,
    )
    if delivery.options.run_dispatcher:
        delivery.dispatcher.start()
    try:
        yield
    finally:
        try:
            await delivery.dispatcher.stop()
        finally:
            await session.close()
