"""What each outbox topic does: the fan-out of a submitted report and one route per kind.

`report.submitted` (written by the service in the turn's transaction) is turned, in one
transaction, into the messages the report needs, each with the idempotency key
"{reference}:{kind}[:{recipient}]", so a fan-out run twice writes nothing twice:

- `email` / `sms`: the acknowledgement to the person (their language), urgent alerts and
  escalations to the on-call addresses (a reference, priority, service and links; never
  the account);
- `webhook.alert`: the signed urgent-alert webhook;
- `webhook.handoff`: the report, as the export's JSON, to the case system;
- `urgent.escalate`: a timer (an outbox row due INTAKE_URGENT_ACK_MINUTES later) that writes
  the escalation emails if nobody has acknowledged the report by then.

Payloads hold what the send needs (an address, a locale); the dispatcher reduces them to
kind and reference once delivered.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import phonenumbers

from bot.i18n import Catalogs
from bot.outbox import texts
from bot.outbox.config import DeliverySettings, OfficeHours
from bot.outbox.dispatcher import Deliver, adapter
from bot.outbox.email import Email, EmailSender, SmsSender
from bot.outbox.failures import Permanent
from bot.outbox.links import ACK_LINK_DAYS, ack_url
from bot.outbox.webhook import WebhookSender
from bot.ports import DirectoryLocation, OutboxMessage, Storage, StoredReport, UnitOfWork

log = logging.getLogger(__name__)

REPORT_TOPIC = "report.submitted"
EMAIL = "email"
SMS = "sms"
ALERT_WEBHOOK = "webhook.alert"
HANDOFF = "webhook.handoff"
ESCALATE = "urgent.escalate"
URGENT = ("urgent", "urgent_review")
LINK_KEY_NAME = "alert_links"


def uk_mobile(phone: str | None) -> str | None:
    """The number in E.164 when it is a +44 mobile (an SMS can reach it; Guernsey, Jersey
    and the Isle of Man share the UK's numbering), else None."""
    if not phone:
        return None
    try:
        number = phonenumbers.parse(phone, "GB")
    except phonenumbers.NumberParseException:
        return None
    if number.country_code != 44:
        return None
    if phonenumbers.number_type(number) != phonenumbers.PhoneNumberType.MOBILE:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def acknowledgement_channel(settings: DeliverySettings, report: Mapping[str, Any]) -> str | None:
    """How a report with these fields is acknowledged: "email", "sms" or None. The chat's
    confirmation and the fan-out both ask this, so the promise and the sending agree."""
    contact = report.get("contact") or {}
    if contact.get("email") and settings.email_backend is not None:
        return "email"
    if settings.sms_enabled and uk_mobile(contact.get("phone")):
        return "sms"
    return None


SUBSCRIPTION_PATH = "/alerts/subscription"
#: A subscription not confirmed within this many days is erased.
UNCONFIRMED_DAYS = 7


def subscription_url(settings: DeliverySettings, action: str, token: str) -> str:
    return f"{settings.public_url}{SUBSCRIPTION_PATH}/{action}?token={token}"


async def queue_inspection_alerts(storage: Storage, now: datetime) -> int:
    """After a directory import: one alert to each confirmed subscriber whose service has a
    newer "Date of latest check" than the one they were last told about. Written to the
    outbox with the key "inspection:{subscription}:{date}" and recorded as told in the same
    transaction, so a repeated import sends nothing twice. Unconfirmed subscriptions older
    than a week are erased here too."""
    queued = 0
    async with storage.unit_of_work() as uow:
        await uow.subscriptions.drop_unconfirmed(now - timedelta(days=UNCONFIRMED_DAYS))
        for news in await uow.subscriptions.newer_inspections():
            subscription, location = news.subscription, news.location
            assert location.last_checked is not None
            payload = {
                "kind": "inspection_alert",
                "to": subscription.email,
                "locale": subscription.locale,
                "token": subscription.token,
                "service": location.name,
                "url": location.url,
            }
            key = f"inspection:{subscription.id}:{location.last_checked.isoformat()}"
            message = OutboxMessage(EMAIL, key, payload, idempotency_key=key)
            await uow.outbox.add([message])
            await uow.subscriptions.mark_told(subscription.id, location.last_checked)
            queued += message.id is not None
        await uow.commit()
    return queued


def in_office_hours(hours: OfficeHours, now: datetime) -> bool:
    local = now.astimezone(hours.zone)
    return local.weekday() in hours.days and hours.start <= local.time() < hours.end


def on_call(settings: DeliverySettings, now: datetime) -> tuple[str, ...]:
    """Office hours (when configured) decide between the day list and the out-of-hours list."""
    if (
        settings.office_hours is not None
        and settings.urgent_out_of_hours_emails
        and not in_office_hours(settings.office_hours, now)
    ):
        return settings.urgent_out_of_hours_emails
    return settings.urgent_alert_emails


class Routes:
    """The per-topic delivery functions, built once per worker by the composition root."""

    def __init__(
        self,
        storage: Storage,
        settings: DeliverySettings,
        catalogs: Catalogs,
        export_record: Callable[[StoredReport], dict[str, Any]],
        *,
        email: EmailSender | None = None,
        sms: SmsSender | None = None,
        alert_webhook: WebhookSender | None = None,
        handoff: WebhookSender | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.catalogs = catalogs
        self.export_record = export_record
        self.email = email
        self.sms = sms
        self.alert_webhook = alert_webhook
        self.handoff = handoff
        self.clock = clock
        self._link_key: bytes | None = None

    def table(self, *, retry_base: float = 2.0) -> dict[str, Deliver]:
        """Topic -> route; a failed send is retried after about retry_base * 2^(n-1) s."""
        sends = {
            REPORT_TOPIC: self.fan_out,
            EMAIL: self.send_email,
            SMS: self.send_sms,
            ALERT_WEBHOOK: self.send_alert_webhook,
            HANDOFF: self.send_handoff,
            ESCALATE: self.escalate,
        }
        return {topic: adapter(send, base=retry_base) for topic, send in sends.items()}

    # ------------------------------------------------------------------ fan-out

    async def fan_out(self, event: OutboxMessage) -> None:
        reference = str(event.payload.get("reference") or event.ordering_key)
        async with self.storage.unit_of_work() as uow:
            report = await uow.reports.get(reference)
        if report is None:
            raise Permanent("report_missing")
        # Read before the unit of work: on SQLite the directory shares the single writer.
        location = await self._alerts_location(report)
        async with self.storage.unit_of_work() as uow:
            messages = self.messages_for(report)
            if location is not None:
                messages += await self._subscribe(uow, report, location)
            await uow.outbox.add(messages)
            await uow.commit()

    async def _alerts_location(self, report: StoredReport) -> DirectoryLocation | None:
        """The matched location when the person asked for inspection alerts and we can send
        them (email on, a public URL for the links)."""
        data = report.data
        email = (data.get("contact") or {}).get("email")
        location_id = data.get("location_id")
        if data.get("alerts") != "yes" or not email or not location_id:
            return None
        if not self.settings.inspection_alerts_deliverable:
            log.warning("inspection alerts asked for, but email or INTAKE_PUBLIC_URL is not set")
            return None
        return await self.storage.directory.get(str(location_id))

    async def _subscribe(
        self, uow: UnitOfWork, report: StoredReport, location: DirectoryLocation
    ) -> list[OutboxMessage]:
        """Double opt-in: a pending subscription (apart from the report) and the email that
        asks to confirm it. An address already subscribed to this service gets nothing."""
        email = str(report.data["contact"]["email"])
        subscription = await uow.subscriptions.add_pending(
            email=email,
            location_id=location.location_id,
            locale=report.locale,
            token=secrets.token_urlsafe(24),
            last_checked_seen=location.last_checked,
            now=self.clock(),
        )
        if subscription is None:
            return []
        payload = {
            "kind": "alert_confirm",
            "reference": report.reference,
            "to": email,
            "locale": report.locale,
            "token": subscription.token,
            "service": location.name,
        }
        key = f"{report.reference}:alert_confirm"
        return [OutboxMessage(EMAIL, report.reference, payload, idempotency_key=key)]

    def messages_for(self, report: StoredReport) -> list[OutboxMessage]:
        ref = report.reference
        settings = self.settings
        now = self.clock()
        messages: list[OutboxMessage] = []

        def add(topic: str, kind: str, extra: dict[str, Any], *, key: str = "") -> None:
            idempotency = f"{ref}:{kind}" + (f":{key}" if key else "")
            payload = {"kind": kind, "reference": ref, **extra}
            messages.append(OutboxMessage(topic, ref, payload, idempotency_key=idempotency))

        contact = report.data.get("contact") or {}
        how = acknowledgement_channel(settings, report.data)
        if how == "email":
            add(EMAIL, "acknowledgement", {"to": contact["email"], "locale": report.locale})
        elif how == "sms":
            phone = uk_mobile(contact.get("phone"))
            add(SMS, "acknowledgement_sms", {"to": phone, "locale": report.locale})
        if report.priority in URGENT:
            if settings.email_backend is not None:
                for address in on_call(settings, now):
                    add(EMAIL, "urgent_alert", {"to": address}, key=address)
            if self.alert_webhook is not None:
                add(ALERT_WEBHOOK, "urgent_webhook", {})
            if settings.urgent_escalation_emails and settings.email_backend is not None:
                add(ESCALATE, "escalation_check", {})
                messages[-1].available_at = now + timedelta(minutes=settings.urgent_ack_minutes)
        if self.handoff is not None:
            add(HANDOFF, "handoff", {})
        return messages

    # ------------------------------------------------------------------ routes

    async def send_email(self, message: OutboxMessage) -> None:
        if self.email is None:
            raise Permanent("email_off")
        payload = message.payload
        kind = payload.get("kind")
        reference = str(payload.get("reference") or "")
        to = str(payload["to"])
        key = message.idempotency_key or f"{message.ordering_key}:{kind}"
        if kind == "acknowledgement":
            locale = str(payload.get("locale") or "en")
            rendered = texts.acknowledgement_email(self.catalogs, locale, reference)
            email = Email(to, rendered.subject, rendered.body, key, language=locale)
        elif kind in ("urgent_alert", "urgent_escalation"):
            email = await self._staff_alert(reference, to, key, escalation=kind != "urgent_alert")
        elif kind == "alert_confirm":
            email = self._alert_confirmation(payload, key)
        elif kind == "inspection_alert":
            email = self._inspection_alert(payload, key)
        else:
            raise Permanent("unknown_kind")
        await self.email.send(email)

    async def send_sms(self, message: OutboxMessage) -> None:
        if self.sms is None:
            raise Permanent("sms_off")
        payload = message.payload
        reference = str(payload["reference"])
        body = texts.acknowledgement_sms(
            self.catalogs, str(payload.get("locale") or "en"), reference
        )
        await self.sms.send_sms(str(payload["to"]), body, message.idempotency_key or reference)

    async def send_alert_webhook(self, message: OutboxMessage) -> None:
        if self.alert_webhook is None:
            raise Permanent("webhook_off")
        report = await self._report(str(message.payload["reference"]))
        body = {
            "type": "report.urgent",
            "reference": report.reference,
            "priority": report.priority,
            "service": self._service(report),
            "received_at": report.created_at.isoformat(),
            "url": self._report_url(report.reference),
        }
        await self.alert_webhook.post(
            message.idempotency_key or report.reference,
            _json(body),
            idempotency_key=report.reference,
        )

    async def send_handoff(self, message: OutboxMessage) -> None:
        if self.handoff is None:
            raise Permanent("handoff_off")
        report = await self._report(str(message.payload["reference"]))
        await self.handoff.post(
            message.idempotency_key or report.reference,
            _json(self.export_record(report)),
            idempotency_key=report.reference,
        )

    async def escalate(self, message: OutboxMessage) -> None:
        """Due INTAKE_URGENT_ACK_MINUTES after the report: nobody acknowledged -> escalate."""
        reference = str(message.payload["reference"])
        async with self.storage.unit_of_work() as uow:
            if await uow.reports.acknowledgement(reference) is not None:
                return
            await uow.outbox.add(
                [
                    OutboxMessage(
                        EMAIL,
                        reference,
                        {"kind": "urgent_escalation", "reference": reference, "to": address},
                        idempotency_key=f"{reference}:urgent_escalation:{address}",
                    )
                    for address in self.settings.urgent_escalation_emails
                ]
            )
            await uow.commit()
        log.warning("urgent report not acknowledged in time: escalated (%s)", reference)

    # ------------------------------------------------------------------ inspection alerts

    def _alert_confirmation(self, payload: Mapping[str, Any], key: str) -> Email:
        locale = str(payload.get("locale") or "en")
        url = subscription_url(self.settings, "confirm", str(payload["token"]))
        rendered = texts.alert_confirmation_email(
            self.catalogs, locale, str(payload["service"]), url
        )
        return Email(str(payload["to"]), rendered.subject, rendered.body, key, language=locale)

    def _inspection_alert(self, payload: Mapping[str, Any], key: str) -> Email:
        locale = str(payload.get("locale") or "en")
        stop = subscription_url(self.settings, "stop", str(payload["token"]))
        rendered = texts.inspection_alert_email(
            self.catalogs, locale, str(payload["service"]), str(payload["url"]), stop
        )
        return Email(
            str(payload["to"]),
            rendered.subject,
            rendered.body,
            key,
            language=locale,
            unsubscribe_url=stop,
        )

    # ------------------------------------------------------------------ helpers

    async def _report(self, reference: str) -> StoredReport:
        async with self.storage.unit_of_work() as uow:
            report = await uow.reports.get(reference)
        if report is None:
            raise Permanent("report_missing")
        return report

    async def link_key(self) -> bytes:
        if self._link_key is None:
            async with self.storage.unit_of_work() as uow:
                value = await uow.secrets.get_or_create(
                    LINK_KEY_NAME, lambda: secrets.token_urlsafe(32)
                )
                await uow.commit()
            self._link_key = value.encode()
        return self._link_key

    def _report_url(self, reference: str) -> str | None:
        base = self.settings.public_url
        return f"{base}/staff/reports/{reference}" if base else None

    @staticmethod
    def _service(report: StoredReport) -> str:
        data = report.data
        name = data.get("provider_name")
        kind = str(data.get("service_type") or "other").replace("_", " ")
        return f"{name} ({kind})" if name else f"{kind} (service not matched in the directory)"

    async def _staff_alert(self, reference: str, to: str, key: str, *, escalation: bool) -> Email:
        """For staff, in English: reference, priority, service, links; never the account."""
        report = await self._report(reference)
        priority = report.priority.replace("_", " ")
        lines = []
        if escalation:
            lines.append(
                f"Nobody has acknowledged this {priority} report within "
                f"{self.settings.urgent_ack_minutes} minutes."
            )
        else:
            lines.append(f"A report marked {priority} has arrived.")
        lines += [
            "",
            f"Reference: {reference}",
            f"Priority: {priority}",
            f"Service: {self._service(report)}",
            f"Received: {report.created_at:%Y-%m-%d %H:%M} UTC",
        ]
        url = self._report_url(reference)
        if url:
            lines.append(f"Read the report: {url}")
        if self.settings.public_url:
            expires = int(time.time()) + ACK_LINK_DAYS * 86400
            link = ack_url(self.settings.public_url, await self.link_key(), reference, to, expires)
            lines.append(f"Acknowledge it (you take charge): {link}")
        lines.append(f"Or from the command line: intake reports ack {reference}")
        lines += ["", "This email does not include what the person told us."]
        subject = ("ESCALATED: " if escalation else "") + f"{priority.upper()} report {reference}"
        return Email(to, subject, "\n".join(lines) + "\n", key)


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
