"""The staff settings from the environment."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from bot.config import ConfigError
from bot.staff.config import StaffSettings
from bot.staff.retention import DEFAULT_RETENTION_DAYS, retention_from_env


def test_defaults_are_the_safe_ones() -> None:
    settings = StaffSettings.from_env({})
    assert settings.enabled and settings.secure_cookies and settings.idle_minutes == 30


def test_values_from_the_environment() -> None:
    settings = StaffSettings.from_env(
        {
            "INTAKE_STAFF_ENABLED": "false",
            "INTAKE_STAFF_ALLOWED_NETWORKS": "10.0.0.0/8, 192.168.1.0/24",
            "INTAKE_STAFF_IDLE_MINUTES": "15",
            "INTAKE_STAFF_SECURE_COOKIES": "false",
            "INTAKE_HOST": "127.0.0.1",
        }
    )
    assert not settings.enabled and not settings.secure_cookies
    assert settings.allowed_networks == (ip_network("10.0.0.0/8"), ip_network("192.168.1.0/24"))
    assert settings.idle_minutes == 15


def test_insecure_cookies_only_on_loopback() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        StaffSettings.from_env({"INTAKE_STAFF_SECURE_COOKIES": "false", "INTAKE_HOST": "0.0.0.0"})


@pytest.mark.parametrize(
    "env",
    [
        {"INTAKE_STAFF_IDLE_MINUTES": "0"},
        {"INTAKE_STAFF_ENABLED": "maybe"},
        {"INTAKE_STAFF_ALLOWED_NETWORKS": "intranet"},
    ],
)
def test_bad_values_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        StaffSettings.from_env(env)


def test_retention_per_category() -> None:
    days = retention_from_env({"INTAKE_RETENTION_DAYS": "feedback=400, default=800"})
    assert days["feedback"] == 400 and days["default"] == 800
    assert days["safeguarding_alert"] == DEFAULT_RETENTION_DAYS["safeguarding_alert"]
    with pytest.raises(ConfigError):
        retention_from_env({"INTAKE_RETENTION_DAYS": "feedback=7"})
