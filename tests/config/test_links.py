"""The links the conversation offers: configuration with defaults (INTAKE_LINK_<KEY>), every
one a well-formed https address; and the phone number the welcome gives
(INTAKE_CONTACT_PHONE)."""

from __future__ import annotations

import pytest

from bot.config import (
    DEFAULT_CONTACT_PHONE,
    DEFAULT_LINKS,
    ConfigError,
    Settings,
    check_link_url,
    links_from_env,
)
from bot.engine.types import Link
from dialogs.intake import INTAKE
from tests.links_support import assert_well_formed_https


def dialog_link_keys() -> set[str]:
    keys: set[Link] = set()
    for step in INTAKE.steps:
        keys.update(step.links)
        for choice in step.choices:
            keys.update(choice.links)
    return {link.key for link in keys}


@pytest.mark.parametrize("key", sorted(DEFAULT_LINKS))
def test_every_default_link_is_a_well_formed_https_address(key: str) -> None:
    assert_well_formed_https(DEFAULT_LINKS[key])
    assert check_link_url(key, DEFAULT_LINKS[key]) == DEFAULT_LINKS[key]


def test_every_configured_link_is_a_well_formed_https_address() -> None:
    for url in Settings.from_env({}).links.values():
        assert_well_formed_https(url)
    env = {"INTAKE_LINK_SAMARITANS": " https://example.org/listen "}
    configured = Settings.from_env(env).links
    assert configured["samaritans"] == "https://example.org/listen"
    for url in configured.values():
        assert_well_formed_https(url)


def test_every_link_the_dialogue_names_has_an_address_and_every_address_is_used() -> None:
    named = dialog_link_keys()
    assert named == set(DEFAULT_LINKS), (
        f"named but not configured: {named - set(DEFAULT_LINKS)}; "
        f"configured but never offered: {set(DEFAULT_LINKS) - named}"
    )


@pytest.mark.parametrize(
    "value",
    [
        "http://www.samaritans.org",
        "javascript:alert(1)",
        "https://",
        "https:///path",
        "https://localhost/",
        "https://www.example.org/a page",
        "https://user:pass@example.org/",
        'https://example.org/"onmouseover=x',
        "ftp://example.org/",
        "www.samaritans.org",
    ],
)
def test_a_link_that_is_not_a_plain_https_address_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="INTAKE_LINK_SAMARITANS"):
        Settings.from_env({"INTAKE_LINK_SAMARITANS": value})


def test_a_link_variable_naming_no_link_is_refused() -> None:
    with pytest.raises(ConfigError, match="INTAKE_LINK_SAMARITAN names no link"):
        links_from_env({"INTAKE_LINK_SAMARITAN": "https://www.samaritans.org"})


def test_the_contact_phone_has_a_default_and_is_checked() -> None:
    assert Settings.from_env({}).contact_phone == DEFAULT_CONTACT_PHONE == "03000 616161"
    assert Settings.from_env({"INTAKE_CONTACT_PHONE": "0300 123 4567"}).contact_phone == (
        "0300 123 4567"
    )
    for bad in ("call us", "<b>0300</b>", "12", "0300-123-4567 ext 9"):
        with pytest.raises(ConfigError, match="INTAKE_CONTACT_PHONE"):
            Settings.from_env({"INTAKE_CONTACT_PHONE": bad})
