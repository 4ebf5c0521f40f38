from __future__ import annotations

import pytest

from bot.config import DEFAULT_DATABASE_URL, DEFAULT_PRIVACY_URL, ConfigError, Settings


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.port == 8080 and settings.telegram_mode == "webhook"
    assert settings.privacy_url == DEFAULT_PRIVACY_URL
    assert isinstance(settings.privacy_url, str)


def test_values_are_read_and_cleaned() -> None:
    settings = Settings.from_env(
        {
            "INTAKE_PORT": " 9090 ",
            "INTAKE_ALLOWED_ORIGINS": "https://a.example/, https://b.example",
            "INTAKE_TELEGRAM_MODE": "polling",
            "INTAKE_PRIVACY_URL": "https://example.org/p",
        }
    )
    assert settings.port == 9090
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.telegram_mode == "polling"
    assert settings.privacy_url == "https://example.org/p"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INTAKE_PORT", "eighty"),
        ("INTAKE_TELEGRAM_MODE", "push"),
        ("INTAKE_DATABASE_CONNECTIONS", "lots"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_trusted_proxies_are_checked() -> None:
    assert Settings.from_env({"INTAKE_TRUSTED_PROXIES": "10.0.0.0/8, ::1"}).trusted_proxies == (
        "10.0.0.0/8",
        "::1",
    )
    with pytest.raises(ConfigError, match="INTAKE_TRUSTED_PROXIES"):
        Settings.from_env({"INTAKE_TRUSTED_PROXIES": "nginx.local"})


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, True), ("0", False), ("off", False), ("yes", True)]
)
def test_keeping_turns_is_on_unless_turned_off(raw: str | None, expected: bool) -> None:
    env = {} if raw is None else {"INTAKE_KEEP_TURNS": raw}
    assert Settings.from_env(env).keep_turns is expected


def test_keeping_turns_must_be_true_or_false() -> None:
    with pytest.raises(ConfigError, match="INTAKE_KEEP_TURNS must be true or false"):
        Settings.from_env({"INTAKE_KEEP_TURNS": "sometimes"})


@pytest.mark.parametrize(("raw", "expected"), [(None, None), ("  ", None), (" 80 ", 80)])
def test_the_database_connections_are_unset_unless_given(
    raw: str | None, expected: int | None
) -> None:
    """Unset (or blank), each `intake serve` worker keeps its own default pools."""
    env = {} if raw is None else {"INTAKE_DATABASE_CONNECTIONS": raw}
    assert Settings.from_env(env).database_connections == expected
