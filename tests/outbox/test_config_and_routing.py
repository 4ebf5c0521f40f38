"""Delivery configuration (the spec's names) and the decisions made from it: which
acknowledgement, which on-call list at what hour, which messages a report fans out to."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from bot.config import ConfigError, Settings
from bot.outbox.config import DeliverySettings, parse_office_hours
from bot.outbox.routes import acknowledgement_channel, in_office_hours, on_call, uk_mobile
from bot.outbox.webhook import sign, verify

KEY = b"k" * 32
WHSEC = "whsec_" + base64.b64encode(KEY).decode()


def settings(**env: str) -> DeliverySettings:
    return Settings.from_env({f"INTAKE_{k}": v for k, v in env.items()}).delivery


def test_nothing_configured_means_email_off() -> None:
    off = settings()
    assert off.email_backend is None and not off.sms_enabled
    assert acknowledgement_channel(off, {"contact": {"email": "a@example.org"}}) is None


def test_smtp_and_notify_settings_and_their_mistakes() -> None:
    smtp = settings(SMTP_URL="smtp://me:p%40ss@mail.example.org:2525", EMAIL_FROM="x@example.org")
    assert smtp.email_backend == "smtp" and smtp.smtp is not None
    assert (smtp.smtp.host, smtp.smtp.port, smtp.smtp.password) == (
        "mail.example.org",
        2525,
        "p@ss",
    )
    assert "p@ss" not in repr(smtp)
    tls = settings(SMTP_URL="smtps://mail.example.org", EMAIL_FROM="x@example.org").smtp
    assert tls is not None and tls.implicit_tls and tls.port == 465
    notify = settings(NOTIFY_API_KEY="k", NOTIFY_TEMPLATE_EMAIL="t", NOTIFY_TEMPLATE_SMS="s")
    assert notify.email_backend == "notify" and notify.sms_enabled
    for bad in (
        {"SMTP_URL": "http://mail.example.org"},
        {"SMTP_URL": "smtp://mail.example.org"},  # no sender address
        {"NOTIFY_API_KEY": "k"},  # no template
        {"URGENT_ALERT_EMAILS": "oncall@example.org, not an address"},
        {"URGENT_ACK_MINUTES": "soon"},
        {"OFFICE_HOURS": "weekdays"},
        {"METRICS_ALLOWED": "everyone"},
    ):
        with pytest.raises(ConfigError):
            settings(**bad)


def test_signed_urls_must_be_https_except_loopback_and_need_a_whsec_secret() -> None:
    ok = settings(HANDOFF_URL="https://cases.example.org/in", HANDOFF_SECRET=WHSEC)
    assert ok.handoff_secret == KEY
    assert settings(ALERT_WEBHOOK_URL="http://127.0.0.1:9/x", ALERT_WEBHOOK_SECRET=WHSEC)
    for bad in (
        {"HANDOFF_URL": "http://cases.example.org/in", "HANDOFF_SECRET": WHSEC},
        {"HANDOFF_URL": "https://cases.example.org/in"},  # no secret
        {"HANDOFF_URL": "https://cases.example.org/in", "HANDOFF_SECRET": "whsec_???"},
    ):
        with pytest.raises(ConfigError):
            settings(**bad)


def test_standard_webhooks_signature() -> None:
    """The spec's example: "v1," + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))."""
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert verify(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body, f"v1,bad {signature}")


def test_out_of_hours_alerts_go_to_the_out_of_hours_list() -> None:
    hours = parse_office_hours("Mon-Fri 09:00-17:00 Europe/London")
    assert hours is not None
    configured = settings(
        URGENT_ALERT_EMAILS="office@example.org",
        URGENT_OUT_OF_HOURS_EMAILS="night@example.org",
        OFFICE_HOURS="Mon-Fri 09:00-17:00 Europe/London",
    )
    tuesday_noon = datetime(2026, 6, 2, 11, 0, tzinfo=UTC)  # 12:00 in London (BST)
    tuesday_night = datetime(2026, 6, 2, 21, 0, tzinfo=UTC)
    saturday = datetime(2026, 6, 6, 11, 0, tzinfo=UTC)
    assert in_office_hours(hours, tuesday_noon) and not in_office_hours(hours, saturday)
    assert on_call(configured, tuesday_noon) == ("office@example.org",)
    assert on_call(configured, tuesday_night) == ("night@example.org",)
    assert on_call(configured, saturday) == ("night@example.org",)


def test_sms_only_to_a_uk_mobile_with_notify() -> None:
    notify = settings(NOTIFY_API_KEY="k", NOTIFY_TEMPLATE_EMAIL="t", NOTIFY_TEMPLATE_SMS="s")
    assert uk_mobile("07400 123456") == "+447400123456"
    assert uk_mobile("020 7946 0958") is None and uk_mobile("+1 202 555 0100") is None
    assert acknowledgement_channel(notify, {"contact": {"phone": "07400 123456"}}) == "sms"
    assert acknowledgement_channel(notify, {"contact": {"phone": "020 7946 0958"}}) is None
    both = {"contact": {"email": "a@example.org", "phone": "07400 123456"}}
    assert acknowledgement_channel(notify, both) == "email"


def test_inspection_alerts_are_deliverable_only_with_email_and_a_public_address() -> None:
    """The chat offers inspection alerts only where the app can send them: the engine's
    `email_alerts` switch comes from this (`bot.app.build_engine`)."""
    from bot.app import build_catalogs, build_engine

    smtp = {"SMTP_URL": "smtp://mail.example.org:2525", "EMAIL_FROM": "x@example.org"}
    public = {"PUBLIC_URL": "https://intake.example.org"}
    cases = [({}, False), (smtp, False), (public, False), ({**smtp, **public}, True)]
    for env, deliverable in cases:
        full = Settings.from_env({f"INTAKE_{k}": v for k, v in env.items()})
        assert full.delivery.inspection_alerts_deliverable is deliverable, env
        engine = build_engine(build_catalogs(full), full)
        assert engine.switches == ({"email_alerts"} if deliverable else set()), env
