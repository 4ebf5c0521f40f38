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
#: How a person reaches someone by phone instead of the chat (the welcome says it).
DEFAULT_CONTACT_PHONE = "03000 616161"
#: The routes the conversation offers as links, by the stable key a dialogue names them with
#: (`bot.engine.types.Link`). Each may be replaced by `INTAKE_LINK_<KEY>` (the key in capitals,
#: e.g. INTAKE_LINK_COMPLAIN_NHS); every one must be a plain https:// address (check_link_url).
#: Where an exact page was not certain, the organisation's own home page is used.
DEFAULT_LINKS: Mapping[str, str] = {
    # The regulator's own pages (named on its "give feedback on care" page).
    "complain_provider": "https://www.cqc.org.uk/contact-us/how-complain/complain-about-service-or-provider",
    "complain_mha": "https://www.cqc.org.uk/contact-us/how-complain/complain-about-use-mental-health-act",
    "contact_us": "https://www.cqc.org.uk/contact-us",
    # Complaints about NHS care, and about council-funded care (to the council).
    "complain_nhs": "https://www.england.nhs.uk/contact-us/feedback-and-complaints/complaint/",
    "find_council": "https://www.gov.uk/find-local-council",
    # The ombudsmen: NHS care (Parliamentary and Health Service Ombudsman); social care
    # (Local Government and Social Care Ombudsman).
    "ombudsman_nhs": "https://www.ombudsman.org.uk",
    "ombudsman_social_care": "https://www.lgo.org.uk",
    # Children's social care: Ofsted, and reporting a worry about a child.
    "ofsted": "https://www.gov.uk/government/organisations/ofsted",
    "report_child_abuse": "https://www.gov.uk/report-child-abuse",
    # Whistleblowing advice (Protect, the UK whistleblowing charity).
    "whistleblowing_advice": "https://protect-advice.org.uk",
    # Someone who is struggling: NHS 111 and Samaritans.
    "nhs_111": "https://111.nhs.uk",
    "samaritans": "https://www.samaritans.org",
    # Who checks care outside England.
    "wales_care": "https://www.careinspectorate.wales",
    "wales_health": "https://www.hiw.org.uk",
    "scotland_care": "https://www.careinspectorate.com",
    "scotland_health": "https://www.healthcareimprovementscotland.org",
    "northern_ireland": "https://www.rqia.org.uk",
}
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


def check_link_url(name: str, value: str) -> str:
    """A well-formed https address that a person can be sent to: a host, no spaces, no
    credentials, nothing that could end the string it is put in; else ConfigError naming
    the variable. Never plain http, not even on loopback: these are shown to the public."""
    parsed = urlsplit(value)
    if (
        parsed.scheme != "https"
        or not parsed.hostname
        or "." not in parsed.hostname
        or parsed.username is not None
        or parsed.password is not None
        or any(c.isspace() or c in "\"'<>\\`" for c in value)
    ):
        raise ConfigError(f"{name} must be a plain https:// address, not {value!r}")
    return value


def check_contact_phone(value: str) -> str:
    """A phone number as people read it: digits, spaces and an optional leading +."""
    digits = value.replace(" ", "")
    if not (digits.lstrip("+").isdigit() and 6 <= len(digits) <= 16 and "+" not in digits[1:]):
        raise ConfigError(f"INTAKE_CONTACT_PHONE must be a phone number, not {value!r}")
    return value


def links_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """The default links, each replaced by its `INTAKE_LINK_<KEY>` when set; an
    `INTAKE_LINK_` variable naming no known key is refused (a typo would otherwise be
    silently ignored)."""
    links = dict(DEFAULT_LINKS)
    prefix = "INTAKE_LINK_"
    for name, raw in env.items():
        if not name.startswith(prefix) or not raw.strip():
            continue
        key = name[len(prefix) :].lower()
        if key not in links:
            known = ", ".join(prefix + k.upper() for k in sorted(DEFAULT_LINKS))
            raise ConfigError(f"{name} names no link we offer; the links are: {known}")
        links[key] = raw.strip()
    return {key: check_link_url(prefix + key.upper(), url) for key, url in links.items()}


def env_bool(variable: str, raw: str | None, default: bool) -> bool:
    """A true-or-false environment variable's value (`raw`, stripped; None when unset)."""
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{variable} must be true or false, not {raw!r}")


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    #: PostgreSQL connections `intake serve` may hold, all its workers together (split by
    #: `storage.sqlalchemy_storage.serving_pool_size`). None: each worker holds 15 for its
    #: turns and 8 for its outbox dispatchers, whatever else shares the database (several
    #: `intake serve` processes, one per port, each unaware of the others).
    database_connections: int | None = None
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
    #: The routes the conversation links to, by key (DEFAULT_LINKS, INTAKE_LINK_<KEY>).
    links: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LINKS))
    #: The phone number the welcome gives for talking to a person instead.
    contact_phone: str = DEFAULT_CONTACT_PHONE
    #: How long a reply is kept for a retry of its message (the summary repeats the answers);
    #: `intake conversations purge` erases older ones. Telegram keeps an update for 24 hours.
    reply_retention_hours: int = 24
    #: A sole `intake serve` process keeps what its turns wrote, to start each conversation's
    #: next turn without reading it (storage.turn_cache). Turn it off where one conversation's
    #: messages reach several processes at random (one process per port behind a round-robin
    #: proxy); `--workers N` never keeps them.
    keep_turns: bool = True
    #: Outgoing messages: email, SMS, urgent alerts, the hand-off (bot/outbox/config.py).
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(f"INTAKE_{name}")
            return value.strip() if value and value.strip() else None

        def get_optional_int(name: str) -> int | None:
            raw = get(name)
            if raw is None:
                return None
            try:
                return int(raw)
            except ValueError as exc:
                raise ConfigError(f"INTAKE_{name} must be a whole number, not {raw!r}") from exc

        def get_int(name: str, default: int) -> int:
            value = get_optional_int(name)
            return default if value is None else value

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
            database_connections=get_optional_int("DATABASE_CONNECTIONS"),
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
            links=links_from_env(env),
            contact_phone=check_contact_phone(get("CONTACT_PHONE") or DEFAULT_CONTACT_PHONE),
            reply_retention_hours=get_int("REPLY_RETENTION_HOURS", 24),
            keep_turns=env_bool("INTAKE_KEEP_TURNS", get("KEEP_TURNS"), True),
        )
