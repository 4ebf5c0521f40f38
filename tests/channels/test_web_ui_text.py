"""GET /api/v1/ui-text: the widget's own words (buttons, labels, errors) in every language."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_catalogs
from bot.channels.web.ui_text import UI_TEXT
from bot.config import DEFAULT_EXIT_URL
from tests.conftest import Api, ApiResult, RunningServer

ROOT = Path(__file__).resolve().parents[2]
CHAT_JS = ROOT / "bot" / "static" / "chat.js"
LOADER_JS = ROOT / "bot" / "static" / "widget.js"
ALLOWED = "https://partner.example.org"

PATH = "/api/v1/ui-text"


def assert_ui_text(result: ApiResult, locale: str, direction: str = "ltr") -> dict[str, str]:
    assert result.status == 200, (result.status, result.body)
    assert result.headers["Content-Type"].startswith("application/json")
    assert set(result.body) == {"locale", "dir", "exit_url", "text"}
    assert result.body["exit_url"] == DEFAULT_EXIT_URL
    assert result.body["locale"] == locale
    assert result.body["dir"] == direction
    text = result.body["text"]
    assert set(text) == set(UI_TEXT), f"{locale}: keys differ from web_ui_text.UI_TEXT"
    empty = [key for key, value in text.items() if not isinstance(value, str) or not value.strip()]
    assert not empty, f"{locale}: empty strings for {empty}"
    leftover = [key for key, value in text.items() if re.search(r"\{[^{}\s]*\}", value)]
    assert not leftover, f"{locale}: placeholders left in {leftover}"
    return dict(text)


async def test_every_locale_has_every_key(api: Api, app_server: RunningServer) -> None:
    catalogs = build_catalogs(app_server.settings)
    english = assert_ui_text(await api.request("GET", PATH + "?locale=en"), "en")
    assert len(catalogs.locales) > 1
    for locale in catalogs.locales:
        direction = "rtl" if catalogs.is_rtl(locale) else "ltr"
        text = assert_ui_text(
            await api.request("GET", PATH, params={"locale": locale}), locale, direction
        )
        if locale != "en":
            # Nothing a person reads may stay English (short words such as "Chat" may match).
            same = [
                k
                for k in ("back", "send", "answerLabel", "newConversation", "notSent")
                if text[k] == english[k]
            ]
            assert not same, f"{locale}: still English: {same}"


async def test_arabic_and_urdu_are_right_to_left(api: Api) -> None:
    for locale in ("ar", "ur"):
        assert_ui_text(await api.request("GET", PATH, params={"locale": locale}), locale, "rtl")


async def test_polish_differs_from_english(api: Api) -> None:
    english = assert_ui_text(await api.request("GET", PATH, params={"locale": "en"}), "en")
    polish = assert_ui_text(await api.request("GET", PATH, params={"locale": "pl"}), "pl")
    assert polish["back"] == "Wróć"
    differing = [key for key in UI_TEXT if polish[key] != english[key]]
    assert len(differing) == len(UI_TEXT), (
        f"Polish is English for {sorted(set(UI_TEXT) - set(differing))}"
    )


def built_in_text(path: Path, variable: str) -> dict[str, str]:
    """The English words a script keeps as `var NAME = {key: "words", ...};`."""
    source = path.read_text(encoding="utf-8")
    block = re.search(rf"var {variable} = \{{\n(.*?)\n  \}};", source, re.S)
    assert block, f"{variable} not found in {path.name}"
    built_in: dict[str, str] = {}
    for line in block.group(1).splitlines():
        match = re.fullmatch(r'\s*(\w+): ("(?:[^"\\]|\\.)*"),', line)
        assert match, f"unexpected line in {variable}: {line!r}"
        built_in[match.group(1)] = json.loads(match.group(2))
    return built_in


async def test_english_matches_the_widgets_built_in_fallback(api: Api) -> None:
    """chat.js keeps the English as DEFAULT_TEXT: the same keys and the same words; the
    loader (widget.js) keeps the few it uses, the same words too."""
    english = assert_ui_text(await api.request("GET", PATH, params={"locale": "en"}), "en")
    assert built_in_text(CHAT_JS, "DEFAULT_TEXT") == english
    loader = built_in_text(LOADER_JS, "TEXT")
    assert loader == {key: english[key] for key in loader}


@pytest.mark.parametrize(
    ("query", "headers", "expected"),
    [
        ("?locale=xx", {}, "en"),
        ("?locale=", {}, "en"),
        ("", {}, "en"),
        ("?locale=" + "x" * 5000, {}, "en"),
        ("?locale=pl-PL", {}, "pl"),
        ("?locale=xx", {"Accept-Language": "pl-PL,pl;q=0.9"}, "pl"),
        ("", {"Accept-Language": "ar;q=0.8, de;q=0.9"}, "ar"),
        ("?locale=cy", {"Accept-Language": "ar"}, "cy"),
    ],
)
async def test_locale_negotiation(
    api: Api, query: str, headers: dict[str, str], expected: str
) -> None:
    result = await api.request("GET", PATH + query, headers=headers)
    assert result.status == 200, result.body
    assert result.body["locale"] == expected


async def test_cacheable_and_varies_by_language_and_origin(api: Api) -> None:
    result = await api.request("GET", PATH, params={"locale": "pl"})
    assert result.headers["Cache-Control"] == "public, max-age=300"
    vary = {v.strip().lower() for v in result.headers["Vary"].split(",")}
    assert {"origin", "accept-language"} <= vary
    assert result.headers["X-Content-Type-Options"] == "nosniff"


async def test_same_origin_rules_as_the_rest_of_the_api(start_server: Any, client: Any) -> None:
    server = await start_server(allowed_origins=(ALLOWED,))
    api = Api(client, server.base_url)
    allowed = await api.request("GET", PATH, headers={"Origin": ALLOWED})
    assert allowed.status == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED

    refused = await api.request("GET", PATH, headers={"Origin": "https://elsewhere.example"})
    assert refused.status == 403
    assert refused.body["error"]["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert refused.headers["Cache-Control"] == "no-store"

    post = await api.request("POST", PATH, json={})
    assert post.status == 405
    assert set(post.body) == {"error"}


async def test_not_limited_per_address(start_server: Any, client: Any) -> None:
    """Per address only new conversations are limited: a crowd behind one address all load
    the widget's words."""
    server = await start_server(rate_limit_per_minute=2, new_conversations_per_minute=2)
    api = Api(client, server.base_url)
    results = [await api.request("GET", PATH) for _ in range(5)]
    assert [r.status for r in results] == [200] * 5
