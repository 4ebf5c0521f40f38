"""Configuration of outgoing messages (`INTAKE_*`; the names are the spec's contract)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

DEFAULT_METRICS_ALLOWED = ("127.0.0.0/8", "::1/128")


class DeliveryConfigError(ValueError):
    """A delivery setting has a value we cannot use; the message names the variable."""


@dataclass(frozen=True, slots=True)
class SmtpServer:
    host: str
    port: int
    username: str | None
    password: str | None
    #: smtps:// (TLS from the first byte); smtp:// uses STARTTLS whenever the server offers it.
    implicit_tls: bool


@dataclass(frozen=True, slots=True)
class OfficeHours:
    """When the on-call list is the office's; outside these hours alerts go to the
    out-of-hours list (when one is set)."""

    days: frozenset[int]  # 0 = Monday
    start: time
    end: time
    zone: ZoneInfo


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    public_url: str | None = None
    email_from: str | None = None
    #: Secrets are left out of repr(), so a settings object in a traceback shows none.
    smtp: SmtpServer | None = field(default=None, repr=False)
    notify_api_key: str | None = field(default=None, repr=False)
    notify_base_url: str | None = None
    notify_template_email: str | None = None
    notify_template_sms: str | None = None
    urgent_alert_emails: tuple[str, ...] = ()
    urgent_out_of_hours_emails: tuple[str, ...] = ()
    office_hours: OfficeHours | None = None
    urgent_escalation_emails: tuple[str, ...] = ()
    urgent_ack_minutes: int = 30
    alert_webhook_url: str | None = None
    alert_webhook_secret: bytes | None = field(default=None, repr=False)
    handoff_url: str | None = None
    handoff_secret: bytes | None = field(default=None, repr=False)
    #: Who may read /metrics (addresses or networks); loopback by default.
    metrics_allowed: tuple[str, ...] = DEFAULT_METRICS_ALLOWED
    outbox_max_attempts: int = 20

    @property
    def email_backend(self) -> str | None:
        """ "notify", "smtp" or None (email is off)."""
        if self.notify_api_key:
            return "notify"
        if self.smtp is not None:
            return "smtp"
        return None

    @property
    def inspection_alerts_deliverable(self) -> bool:
        """Whether inspection-alert emails can be sent: email on, and a public address for
        the confirm and stop links they carry. The chat offers them only then."""
        return self.email_backend is not None and bool(self.public_url)

    @property
    def sms_enabled(self) -> bool:
        return bool(self.notify_api_key and self.notify_template_sms)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DeliverySettings:
        def get(name: str) -> str | None:
            value = env.get(f"INTAKE_{name}")
            return value.strip() if value and value.strip() else None

        notify_key = get("NOTIFY_API_KEY")
        template_email = get("NOTIFY_TEMPLATE_EMAIL")
        if notify_key and not template_email:
            raise DeliveryConfigError(
                "INTAKE_NOTIFY_API_KEY is set: set INTAKE_NOTIFY_TEMPLATE_EMAIL too (the id of a "
                "template whose subject is ((subject)) and whose message is ((body)))"
            )
        smtp_url = get("SMTP_URL")
        public_url = get("PUBLIC_URL")
        if public_url:
            public_url = public_url.rstrip("/")
            if urlsplit(public_url).scheme not in ("https", "http"):
                raise DeliveryConfigError("INTAKE_PUBLIC_URL must be an http(s) URL")
        email_from = get("EMAIL_FROM")
        if email_from:
            email_from = _address("INTAKE_EMAIL_FROM", email_from)
        smtp = parse_smtp_url(smtp_url) if smtp_url else None
        if smtp is not None and not email_from:
            raise DeliveryConfigError("INTAKE_SMTP_URL is set: set INTAKE_EMAIL_FROM too")
        ack_minutes = get("URGENT_ACK_MINUTES") or "30"
        if not ack_minutes.isdigit() or int(ack_minutes) < 1:
            raise DeliveryConfigError("INTAKE_URGENT_ACK_MINUTES must be a whole number of minutes")
        attempts = get("OUTBOX_MAX_ATTEMPTS") or "20"
        if not attempts.isdigit() or int(attempts) < 1:
            raise DeliveryConfigError("INTAKE_OUTBOX_MAX_ATTEMPTS must be a positive whole number")
        metrics = get("METRICS_ALLOWED")
        return cls(
            public_url=public_url,
            email_from=email_from,
            smtp=smtp,
            notify_api_key=notify_key,
            notify_base_url=get("NOTIFY_BASE_URL"),
            notify_template_email=template_email,
            notify_template_sms=get("NOTIFY_TEMPLATE_SMS"),
            urgent_alert_emails=_addresses(
                "INTAKE_URGENT_ALERT_EMAILS", get("URGENT_ALERT_EMAILS")
            ),
            urgent_out_of_hours_emails=_addresses(
                "INTAKE_URGENT_OUT_OF_HOURS_EMAILS", get("URGENT_OUT_OF_HOURS_EMAILS")
            ),
            office_hours=parse_office_hours(get("OFFICE_HOURS")),
            urgent_escalation_emails=_addresses(
                "INTAKE_URGENT_ESCALATION_EMAILS", get("URGENT_ESCALATION_EMAILS")
            ),
            urgent_ack_minutes=int(ack_minutes),
            alert_webhook_url=_webhook_url("INTAKE_ALERT_WEBHOOK_URL", get("ALERT_WEBHOOK_URL")),
            alert_webhook_secret=_secret(
                "INTAKE_ALERT_WEBHOOK_SECRET", get("ALERT_WEBHOOK_SECRET"), get("ALERT_WEBHOOK_URL")
            ),
            handoff_url=_webhook_url("INTAKE_HANDOFF_URL", get("HANDOFF_URL")),
            handoff_secret=_secret(
                "INTAKE_HANDOFF_SECRET", get("HANDOFF_SECRET"), get("HANDOFF_URL")
            ),
            metrics_allowed=_networks(metrics) if metrics else DEFAULT_METRICS_ALLOWED,
            outbox_max_attempts=int(attempts),
        )


def parse_smtp_url(url: str) -> SmtpServer:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise DeliveryConfigError(
            "INTAKE_SMTP_URL must look like smtp://[user:password@]host:port or smtps://..."
        )
    implicit = parts.scheme == "smtps"
    try:
        port = parts.port or (465 if implicit else 587)
    except ValueError as error:
        raise DeliveryConfigError("INTAKE_SMTP_URL has a port that is not a number") from error
    return SmtpServer(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        implicit_tls=implicit,
    )


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_office_hours(value: str | None) -> OfficeHours | None:
    """`Mon-Fri 09:00-17:00 Europe/London` (the zone defaults to Europe/London)."""
    if value is None:
        return None
    problem = "INTAKE_OFFICE_HOURS must look like 'Mon-Fri 09:00-17:00 Europe/London'"
    words = value.split()
    if len(words) not in (2, 3):
        raise DeliveryConfigError(problem)
    first, _, last = words[0].lower().partition("-")
    opens, _, closes = words[1].partition("-")
    try:
        first_day = _DAYS.index(first)
        last_day = _DAYS.index(last or first)
        start = time.fromisoformat(opens.zfill(5))
        end = time.fromisoformat(closes.zfill(5))
        zone = ZoneInfo(words[2] if len(words) == 3 else "Europe/London")
    except (ValueError, ZoneInfoNotFoundError) as error:
        raise DeliveryConfigError(problem) from error
    days = frozenset((first_day + step) % 7 for step in range((last_day - first_day) % 7 + 1))
    return OfficeHours(days, start, end, zone)


def _address(name: str, value: str) -> str:
    try:
        return str(validate_email(value, check_deliverability=False).normalized)
    except EmailNotValidError as error:
        raise DeliveryConfigError(f"{name} has an entry that is not an email address") from error


def _addresses(name: str, value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(_address(name, part.strip()) for part in value.split(",") if part.strip())


def is_loopback_host(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _webhook_url(name: str, value: str | None) -> str | None:
    """https only; plain http only to a loopback address (tests, local development)."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return value
    raise DeliveryConfigError(f"{name} must be an https URL (plain http only to loopback)")


def _secret(name: str, value: str | None, url: str | None) -> bytes | None:
    """`whsec_` + base64(key), the Standard Webhooks form."""
    if value is None:
        if url is not None:
            raise DeliveryConfigError(f"{name} must be set when its URL is")
        return None
    raw = value.removeprefix("whsec_")
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as error:
        raise DeliveryConfigError(f"{name} must be 'whsec_' followed by base64") from error
    if len(key) < 16:
        raise DeliveryConfigError(f"{name} is too short (at least 16 bytes of key)")
    return key


def _networks(value: str) -> tuple[str, ...]:
    networks = tuple(part.strip() for part in value.split(",") if part.strip())
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError as error:
            raise DeliveryConfigError(
                f"INTAKE_METRICS_ALLOWED has an entry that is not an address or network: {network!r}"
            ) from error
    return networks
