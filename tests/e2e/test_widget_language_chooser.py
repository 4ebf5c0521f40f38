"""The language chooser anyone can recognise: a globe, the word "Language" and the current
language's own name; each language offered in its own language with its own `lang` (and `dir`
where right to left), so a screen reader pronounces it; Urdu set in Nastaliq fonts with room
between the lines."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import DESKTOP, PHONE, Chat, OpenChat, save_screenshot

pytestmark = pytest.mark.browser

RIGHT_TO_LEFT = {"ar", "ur"}


async def language_button(chat: Chat) -> dict[str, Any]:
    return dict(
        await chat.tool("language").evaluate(
            """b => {
                const current = b.querySelector('.ciw-tool-current');
                return {
                    icon: !!b.querySelector('svg[aria-hidden=true]'),
                    label: b.querySelector('.ciw-tool-label').textContent,
                    current: current && current.textContent,
                    lang: current && current.lang, dir: current && current.dir,
                };
            }"""
        )
    )


async def test_the_chooser_names_each_language_in_itself(open_chat: OpenChat) -> None:
    _, page, chat = await open_chat(viewport=PHONE)
    button = await language_button(chat)
    assert button == {
        "icon": True,
        "label": "Language",
        "current": "English",
        "lang": "en",
        "dir": "ltr",
    }

    before = await chat.turn()
    await chat.tool("language").click()
    await chat.wait_turn_after(before)
    await chat.wait_step("language")
    options = await chat.inside.locator(".ciw-choice").evaluate_all(
        "nodes => nodes.map(n => ({id: n.dataset.choiceId, lang: n.lang, dir: n.dir}))"
    )
    languages = [o for o in options if o["lang"]]
    assert len(languages) >= 12, options
    for option in languages:
        assert option["lang"] == option["id"], option
        assert option["dir"] == ("rtl" if option["id"] in RIGHT_TO_LEFT else "ltr"), option
    await save_screenshot(page, "widget-language-chooser-360px")

    await chat.choose("ur")
    frame = await chat.frame()
    await frame.wait_for_selector('.ciw-root[data-ui-locale="ur"]', state="attached")
    button = await language_button(chat)
    assert button["current"] == "اردو" and button["lang"] == "ur" and button["dir"] == "rtl"
    assert button["label"] != "Language"

    # Urdu in Nastaliq fonts (where the device has them), with taller lines.
    style = await chat.inside.locator('.ciw-msg[data-role="bot"] .ciw-text').last.evaluate(
        """p => { const s = getComputedStyle(p);
            return {font: s.fontFamily, ratio: parseFloat(s.lineHeight) / parseFloat(s.fontSize),
                    lang: p.closest('[lang]').lang}; }"""
    )
    assert style["lang"] == "ur"
    assert style["font"].startswith('"Noto Nastaliq Urdu", "Jameel Noori Nastaleeq"'), style
    assert style["font"].rstrip().endswith("serif")
    assert style["ratio"] >= 1.9, style
    name_font = await chat.inside.locator(".ciw-tool-current").evaluate(
        "n => getComputedStyle(n).fontFamily"
    )
    assert "Nastaliq" in name_font  # the Urdu name itself
    await save_screenshot(page, "widget-language-ur-360px")
    page.watch.assert_clean()


async def test_the_chooser_on_a_desktop_screenshot(open_chat: OpenChat) -> None:
    _, page, chat = await open_chat(viewport=DESKTOP)
    before = await chat.turn()
    await chat.tool("language").click()
    await chat.wait_turn_after(before)
    await chat.wait_step("language")
    await save_screenshot(page, "widget-language-chooser-1280px")
    page.watch.assert_clean()
