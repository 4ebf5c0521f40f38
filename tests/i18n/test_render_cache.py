"""Rendering keeps what a text without parameters says in each language: the same words as
rendering afresh, and a broken translation is still logged every time it is said."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.engine.types import C, T, Text
from bot.i18n import Catalogs

PO = """\
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"
"Language: pl\\n"
"Plural-Forms: nplurals=3; plural=(n==1 ? 0 : n%10>=2 && n%10<=4 && (n%100<12 || n%100>14) ? 1 : 2);\\n"

msgid "Hello"
msgstr "Cześć"

msgid "Call us"
msgstr "Zadzwoń {phone}"

msgid "Read {privacy_url}"
msgstr "Przeczytaj {privacy_url}"

msgctxt "command word"
msgid "cancel"
msgstr "anuluj"
"""


@pytest.fixture
def catalogs(tmp_path: Path) -> Catalogs:
    folder = tmp_path / "pl" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "messages.po").write_text(PO, encoding="utf-8")
    return Catalogs(tmp_path, globals_={"privacy_url": "https://example.org/p"})


@pytest.mark.parametrize(
    ("text", "locale", "said"),
    [
        (T("Hello"), "pl", "Cześć"),
        (T("Hello"), "en", "Hello"),
        (T("Hello"), "xx", "Hello"),  # a language we have no catalog for
        (C("command word", "cancel"), "pl", "anuluj"),
        (T("cancel"), "pl", "cancel"),  # the same id without the context is another text
        (T("Read {privacy_url}"), "pl", "Przeczytaj https://example.org/p"),
        (Text.raw("Hello"), "pl", "Hello"),  # verbatim: never translated
    ],
)
def test_the_same_words_every_time(catalogs: Catalogs, text: Text, locale: str, said: str) -> None:
    assert [catalogs.render(text, locale) for _ in range(3)] == [said] * 3
    assert catalogs.translator(locale)(text) == said


def test_a_broken_translation_is_logged_every_time(
    catalogs: Catalogs, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="bot.i18n"):
        said = [catalogs.render(T("Call us"), "pl") for _ in range(3)]
    assert said == ["Call us"] * 3  # the English source, as without the cache
    assert len([r for r in caplog.records if "bad placeholders" in r.getMessage()]) == 3


def test_parameters_are_filled_every_time(catalogs: Catalogs) -> None:
    assert catalogs.render(T("Hi {name}", name="Ala"), "pl") == "Hi Ala"
    assert catalogs.render(T("Hi {name}", name="Ola"), "pl") == "Hi Ola"
