"""The staff application's settings (`INTAKE_STAFF_*`), read once by the composition root."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path

from bot.config import ConfigError, env_bool

#: Where `make staff-assets` (npm ci) puts GOV.UK Frontend's compiled files.
DEFAULT_ASSETS_DIR = (
    Path(__file__).resolve().parents[2] / "node_modules" / "govuk-frontend" / "dist" / "govuk"
)


LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True, slots=True)
class StaffSettings:
    enabled: bool = True
    #: Cookies marked Secure (sent over HTTPS only). Off only for development on loopback.
    secure_cookies: bool = True
    #: A session unused for this long is over.
    idle_minutes: int = 30
    #: Failed sign-ins in a row before the account is locked, and for how long.
    max_failed_sign_ins: int = 5
    lockout_minutes: int = 15
    #: Sign-in attempts per minute from one client address (per worker).
    sign_ins_per_minute: int = 10
    #: Client networks allowed to reach /staff/ (empty: any). Others get 404.
    allowed_networks: tuple[IPv4Network | IPv6Network, ...] = ()
    #: The base of links printed by `intake staff add|reset`, e.g. https://intake.internal
    public_url: str = "http://127.0.0.1:8080"
    #: One-time enrolment links stop working after this many hours.
    enrolment_hours: int = 72
    assets_dir: Path = DEFAULT_ASSETS_DIR
    #: Single sign-on over OpenID Connect, optional: the provider's issuer URL and our client.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    #: The ID token claim that must equal a staff account's username.
    oidc_username_claim: str = "preferred_username"
    #: Refuse ID tokens whose `amr` does not include "mfa" (the provider did two factors).
    oidc_require_mfa: bool = True

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StaffSettings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(f"INTAKE_STAFF_{name}")
            return value.strip() if value and value.strip() else None

        def get_bool(name: str, default: bool) -> bool:
            return env_bool(f"INTAKE_STAFF_{name}", get(name), default)

        def get_int(name: str, default: int) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError as exc:
                raise ConfigError(f"INTAKE_STAFF_{name} must be a whole number") from exc
            if value < 1:
                raise ConfigError(f"INTAKE_STAFF_{name} must be at least 1")
            return value

        networks = []
        for entry in (get("ALLOWED_NETWORKS") or "").split(","):
            if entry.strip():
                try:
                    networks.append(ip_network(entry.strip(), strict=False))
                except ValueError as exc:
                    raise ConfigError(
                        f"INTAKE_STAFF_ALLOWED_NETWORKS has an entry that is not a network: {entry!r}"
                    ) from exc
        host = env.get("INTAKE_HOST", "127.0.0.1")
        port = env.get("INTAKE_PORT", "8080")
        secure = get_bool("SECURE_COOKIES", True)
        if not secure and host not in LOOPBACK:
            raise ConfigError(
                "INTAKE_STAFF_SECURE_COOKIES=false is only for development on loopback "
                f"(INTAKE_HOST is {host!r}); serve /staff/ over HTTPS instead"
            )
        assets = get("ASSETS_DIR")
        return cls(
            enabled=get_bool("ENABLED", True),
            secure_cookies=secure,
            idle_minutes=get_int("IDLE_MINUTES", 30),
            max_failed_sign_ins=get_int("MAX_FAILED_SIGN_INS", 5),
            lockout_minutes=get_int("LOCKOUT_MINUTES", 15),
            sign_ins_per_minute=get_int("SIGN_INS_PER_MINUTE", 10),
            allowed_networks=tuple(networks),
            public_url=(get("PUBLIC_URL") or f"http://{host}:{port}").rstrip("/"),
            enrolment_hours=get_int("ENROLMENT_HOURS", 72),
            assets_dir=Path(assets) if assets else DEFAULT_ASSETS_DIR,
            oidc_issuer=(get("OIDC_ISSUER") or "").rstrip("/") or None,
            oidc_client_id=get("OIDC_CLIENT_ID"),
            oidc_client_secret=get("OIDC_CLIENT_SECRET"),
            oidc_username_claim=get("OIDC_USERNAME_CLAIM") or "preferred_username",
            oidc_require_mfa=get_bool("OIDC_REQUIRE_MFA", True),
        )
