"""Configuration from the environment (`INTAKE_*`), read once by the composition root."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import ip_network
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from bot.outbox.config import DeliveryConfigError, DeliverySettings

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/intake.sqlite3"
DEFAULT_MAX_BODY_BYTES = 256 * 1024
DEFAULT_PRIVACY_URL = "https://www.cqc.org.uk/about-us/our-policies/privacy-statement"
#: Where the widget's "Exit this page" goes: a neutral page nobody would wonder about.
DEFAULT_EXIT_URL = "https://www.bbc.co.uk/weather"
#: Plain http is only for a page on this machine (tests, local trials).
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


def check_exit_url(value: str) -> str:
    """A well-formed https address (http only on loopback), with nothing that could end the
    string it is put in; else ConfigError naming INTAKE_EXIT_URL."""
    parsed = urlsplit(value)
    loopback = parsed.scheme == "http" and parsed.hostname in _LOOPBACK_HOSTS
    if (
        (parsed.scheme != "https" and not loopback)
        or not parsed.hostname
        or parsed.username is not None
        or any(c.isspace() or c in "\"'<>\\" for c in value)
    ):
        raise ConfigError(f"INTAKE_EXIT_URL must be a plain https:// address, not {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8080
    telegram_token: str | None = None
    telegram_webhook_secret: str | None = None
    telegram_api_base_url: str | None = None
    telegram_mode: Literal["webhook", "polling"] = "webhook"
    telegram_public_url: str | None = None
    allowed_origins: tuple[str, ...] = ()
    #: Our reverse proxies (addresses or CIDR blocks): only their X-Forwarded-For is believed.
    trusted_proxies: tuple[str, ...] = ()
    #: Directory CSV imported on first start when the directory table is empty.
    directory_csv: Path | None = None
    #: The largest legal answer (20,000 characters) in a 4-byte script, JSON-escaped as
    #: surrogate pairs (12 bytes a character, as `json.dumps` does by default), is 240,000
    #: bytes; 256 KiB leaves room for the rest of the body.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: Turns and views a minute for one person in one conversation (web API), per worker.
    rate_limit_per_minute: int = 120
    #: New conversations a minute from one address (an IPv6 /64), per worker: generous, so a
    #: crowd behind one address (a carrier NAT, a hospital, a library) can all start.
    new_conversations_per_minute: int = 60
    #: New conversations a minute from everyone, per worker: a flood of empty conversations
    #: from rotating addresses cannot fill the database (untouched ones are also swept).
    new_conversations_total_per_minute: int = 600
    privacy_url: str = DEFAULT_PRIVACY_URL
    #: "Exit this page" in the widget goes here (check_exit_url).
    exit_url: str = DEFAULT_EXIT_URL
    #: How long a reply is kept for a retry of its message (the summary repeats the answers);
    #: `intake conversations purge` erases older ones. Telegram keeps an update for 24 hours.
    reply_retention_hours: int = 24
    #: Outgoing messages: email, SMS, urgent alerts, the hand-off (bot/outbox/config.py).
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(f"INTAKE_{name}")
            return value.strip() if value and value.strip() else None

        def get_int(name: str, default: int) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                return int(raw)
            except ValueError as exc:
                raise ConfigError(f"INTAKE_{name} must be a whole number, not {raw!r}") from exc

        mode = get("TELEGRAM_MODE") or "webhook"
        if mode not in ("webhook", "polling"):
            raise ConfigError(f"INTAKE_TELEGRAM_MODE must be 'webhook' or 'polling', not {mode!r}")
        origins = tuple(
            o.strip().rstrip("/") for o in (get("ALLOWED_ORIGINS") or "").split(",") if o.strip()
        )
        proxies = tuple(p.strip() for p in (get("TRUSTED_PROXIES") or "").split(",") if p.strip())
        for proxy in proxies:
            try:
                ip_network(proxy, strict=False)
            except ValueError as exc:
                raise ConfigError(
                    f"INTAKE_TRUSTED_PROXIES has an entry that is not an address or network: {proxy!r}"
                ) from exc
        csv = get("DIRECTORY_CSV")
        try:
            delivery = DeliverySettings.from_env(env)
        except DeliveryConfigError as exc:
            raise ConfigError(str(exc)) from exc
        return cls(
            delivery=delivery,
            database_url=get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            host=get("HOST") or "127.0.0.1",
            port=get_int("PORT", 8080),
            telegram_token=get("TELEGRAM_TOKEN"),
            telegram_webhook_secret=get("TELEGRAM_WEBHOOK_SECRET"),
            telegram_api_base_url=get("TELEGRAM_API_BASE_URL"),
            telegram_mode=mode,  # type: ignore[arg-type]
            telegram_public_url=get("TELEGRAM_PUBLIC_URL"),
            allowed_origins=origins,
            trusted_proxies=proxies,
            directory_csv=Path(csv) if csv else None,
            max_body_bytes=get_int("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            rate_limit_per_minute=get_int("RATE_LIMIT_PER_MINUTE", 120),
            new_conversations_per_minute=get_int("NEW_CONVERSATIONS_PER_MINUTE", 60),
            new_conversations_total_per_minute=get_int("NEW_CONVERSATIONS_TOTAL_PER_MINUTE", 600),
            privacy_url=get("PRIVACY_URL") or DEFAULT_PRIVACY_URL,
            exit_url=check_exit_url(get("EXIT_URL") or DEFAULT_EXIT_URL),
            reply_retention_hours=get_int("REPLY_RETENTION_HOURS", 24),
        )
