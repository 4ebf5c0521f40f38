"""INTAKE_EXIT_URL: where the widget's "Exit this page" sends the page."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from bot.config import DEFAULT_EXIT_URL, ConfigError, Settings, check_exit_url


def test_the_default_is_a_well_formed_https_address() -> None:
    parsed = urlsplit(DEFAULT_EXIT_URL)
    assert parsed.scheme == "https" and parsed.hostname and "." in parsed.hostname
    assert check_exit_url(DEFAULT_EXIT_URL) == DEFAULT_EXIT_URL
    assert Settings.from_env({}).exit_url == DEFAULT_EXIT_URL


def test_it_is_read_from_the_environment() -> None:
    env = {"INTAKE_EXIT_URL": " https://www.google.co.uk/ "}
    assert Settings.from_env(env).exit_url == "https://www.google.co.uk/"
    assert check_exit_url("http://127.0.0.1:8000/weather") == "http://127.0.0.1:8000/weather"


@pytest.mark.parametrize(
    "value",
    [
        "http://www.bbc.co.uk/weather",
        "javascript:alert(1)",
        "https://",
        "www.bbc.co.uk",
        'https://example.org/"onload',
        "https://user@example.org/",
    ],
)
def test_anything_else_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="INTAKE_EXIT_URL"):
        Settings.from_env({"INTAKE_EXIT_URL": value})
