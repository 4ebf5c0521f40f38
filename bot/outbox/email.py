"""Email and SMS: one port, two backends (plain SMTP with aiosmtplib, GOV.UK Notify).

`EmailSender.send` raises `RetryLater` or `Permanent` (bot/outbox/failures.py); retries and
dead letters are the dispatcher's. A message carries an idempotency key ("{reference}:{kind}"):
SMTP puts it in a stable Message-ID (so a receiving system can drop a duplicate); Notify gets
it as its `reference`, which holds no personal data. Addresses and bodies are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol

import aiosmtplib
from notifications_python_client.errors import APIError
from notifications_python_client.notifications import NotificationsAPIClient

from bot.outbox.config import SmtpServer
from bot.outbox.failures import Permanent, RetryLater

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Email:
    to: str
    subject: str
    body: str
    idempotency_key: str
    language: str = "en"
    #: One-click unsubscribe (RFC 8058): List-Unsubscribe and List-Unsubscribe-Post headers.
    unsubscribe_url: str | None = None


class EmailSender(Protocol):
    backend: str

    async def send(self, email: Email) -> None: ...


class SmsSender(Protocol):
    async def send_sms(self, phone_number: str, body: str, idempotency_key: str) -> None: ...


def build_message(email: Email, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    domain = sender.rpartition("@")[2] or "localhost"
    # Stable per message: a resend after a crash carries the same id.
    message["Message-ID"] = f"<{email.idempotency_key.replace(':', '.')}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    if email.unsubscribe_url:
        message["List-Unsubscribe"] = f"<{email.unsubscribe_url}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(email.body)
    message["Content-Language"] = email.language  # after set_content, which resets Content-*
    return message


class SmtpEmailSender:
    """Plain SMTP: STARTTLS whenever the server offers it (smtp://), or TLS from the start
    (smtps://); AUTH when a user is configured."""

    backend = "smtp"

    def __init__(
        self,
        server: SmtpServer,
        sender: str,
        *,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.server = server
        self.sender = sender
        self.timeout = timeout
        self.tls_context = tls_context

    async def send(self, email: Email) -> None:
        message = build_message(email, self.sender)
        try:
            await aiosmtplib.send(
                message,
                hostname=self.server.host,
                port=self.server.port,
                username=self.server.username,
                password=self.server.password,
                use_tls=self.server.implicit_tls,
                start_tls=None if not self.server.implicit_tls else False,
                timeout=self.timeout,
                tls_context=self.tls_context,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refusal.code for refusal in error.recipients]
            if codes and all(500 <= code < 600 for code in codes):
                raise Permanent("recipient_refused") from None
            raise RetryLater("recipient_deferred") from None
        except aiosmtplib.SMTPAuthenticationError:
            log.error("email: the SMTP server refused our login; check INTAKE_SMTP_URL")
            raise RetryLater("smtp_auth") from None
        except aiosmtplib.SMTPResponseException as error:
            # Refused for now (4xx) or by a server in trouble (5xx): retried, then dead-lettered.
            raise RetryLater(f"smtp_{error.code}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise RetryLater(f"smtp_{type(error).__name__}") from None


class NotifySender:
    """GOV.UK Notify through its official client (synchronous, so run in a thread).

    Two templates by id: an email template whose subject is `((subject))` and whose message
    is `((body))`, and an SMS template whose message is `((body))`: the words come from our
    own catalogs, in the person's language.
    """

    backend = "notify"

    def __init__(
        self,
        api_key: str,
        email_template_id: str,
        *,
        sms_template_id: str | None = None,
        base_url: str | None = None,
    ) -> None:
        if base_url:
            self.client = NotificationsAPIClient(api_key, base_url=base_url)  # type: ignore[no-untyped-call]
        else:
            self.client = NotificationsAPIClient(api_key)  # type: ignore[no-untyped-call]
        self.email_template_id = email_template_id
        self.sms_template_id = sms_template_id

    async def send(self, email: Email) -> None:
        personalisation = {"subject": email.subject, "body": email.body}
        await self._call(
            lambda: self.client.send_email_notification(  # type: ignore[no-untyped-call]
                email_address=email.to,
                template_id=self.email_template_id,
                personalisation=personalisation,
                reference=email.idempotency_key,
                one_click_unsubscribe_url=email.unsubscribe_url,
            )
        )

    async def send_sms(self, phone_number: str, body: str, idempotency_key: str) -> None:
        if not self.sms_template_id:
            raise Permanent("sms_off")
        template = self.sms_template_id
        await self._call(
            lambda: self.client.send_sms_notification(  # type: ignore[no-untyped-call]
                phone_number=phone_number,
                template_id=template,
                personalisation={"body": body},
                reference=idempotency_key,
            )
        )

    async def _call(self, request: Callable[[], object]) -> None:
        try:
            await asyncio.to_thread(request)
        except APIError as error:
            status = error.status_code
            if status == 429 or status >= 500:
                raise RetryLater(f"notify_{status}") from None
            if status in (401, 403):
                log.error("email: GOV.UK Notify refused our key; check INTAKE_NOTIFY_API_KEY")
                raise RetryLater(f"notify_{status}") from None
            raise Permanent(f"notify_{status}") from None
        except OSError as error:
            raise RetryLater(f"notify_{type(error).__name__}") from None
