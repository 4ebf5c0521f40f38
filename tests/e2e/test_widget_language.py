"""The widget's own words follow the conversation's language: after picking Polish the toolbar,
buttons and labels are Polish; after Arabic the whole panel, toolbar too, is right to left;
a page that asks for Welsh (data-locale="cy") shows Welsh chrome from the start."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import DESKTOP, PHONE, Chat, OpenChat, save_screenshot

pytestmark = pytest.mark.browser

WELSH_PAGE = """<!doctype html>
<html lang="cy">
<head><meta charset="utf-8"><title>Tudalen</title></head>
<body><main><h1>Gofal</h1></main>
<script src="/widget.js" defer data-locale="cy"></script>
</body>
</html>
"""


async def ui_text(page: Any, base_url: str, locale: str) -> dict[str, str]:
    response = await page.request.get(f"{base_url}/api/v1/ui-text?locale={locale}")
    assert response.ok, await response.text()
    body = await response.json()
    assert body["locale"] == locale
    return dict(body["text"])


async def wait_ui_locale(chat: Chat, locale: str) -> None:
    """The chat's own words (inside its frame) are in `locale`."""
    frame = await chat.frame()
    await frame.wait_for_selector(f'.ciw-root[data-ui-locale="{locale}"]', state="attached")


async def wait_launcher_locale(page: Any, locale: str) -> None:
    """The launcher (on the embedding page) speaks `locale`."""
    await page.wait_for_selector(f'.ciw-embed[data-ui-locale="{locale}"]', state="attached")


async def pick_language(chat: Chat, code: str) -> None:
    before = await chat.turn()
    await chat.tool("language").click()
    await chat.wait_turn_after(before)
    await chat.wait_step("language")
    if await chat.choice(code).count() == 0:
        pytest.skip(f"no {code} catalog is offered by this build")
    await chat.choose(code)


async def chrome(chat: Chat) -> dict[str, Any]:
    """What the chrome says and how it is laid out, read from the frame's DOM."""
    launcher = await chat.page.locator(".ciw-launcher-label").text_content()
    return dict(
        await chat.evaluate(
            """() => {
                const q = s => document.querySelector(s);
                const textarea = q('.ciw-input');
                const toolbar = q('.ciw-toolbar');
                return {
                    back: q('.ciw-tool[data-command="back"]').textContent,
                    restart: q('.ciw-tool[data-command="restart"]').textContent,
                    language: q('.ciw-tool[data-command="language"] .ciw-tool-label').textContent,
                    toolbarLabel: toolbar.getAttribute('aria-label'),
                    toolbarDir: getComputedStyle(toolbar).direction,
                    toolbarLang: toolbar.closest('[lang]').lang,
                    panelDir: q('.ciw-panel').dir,
                    panelLang: q('.ciw-panel').lang,
                    title: q('.ciw-title').textContent,
                    close: q('.ciw-close').getAttribute('aria-label'),
                    answerLabel: textarea.labels[0].textContent,
                    placeholder: textarea.placeholder,
                    send: q('.ciw-send').textContent,
                    choicesLabel: q('.ciw-choices').getAttribute('aria-label'),
                    logLang: q('.ciw-log').lang,
                    messages: document.querySelectorAll('.ciw-msg').length,
                    focusInPanel: document.hasFocus() && q('.ciw-panel').contains(document.activeElement),
                };
            }"""
        ),
        launcher=launcher,
    )


async def test_picking_polish_then_arabic_translates_the_chrome(open_chat: OpenChat) -> None:
    server, page, chat = await open_chat(viewport=DESKTOP)
    english = await ui_text(page, server.base_url, "en")
    polish = await ui_text(page, server.base_url, "pl")
    arabic = await ui_text(page, server.base_url, "ar")
    await wait_ui_locale(chat, "en")
    shown = await chrome(chat)
    assert shown["back"] == english["back"] == "Back"
    assert shown["answerLabel"] == english["answerLabel"]

    await pick_language(chat, "pl")
    await wait_ui_locale(chat, "pl")
    shown = await chrome(chat)
    assert shown["back"] == polish["back"] != english["back"]
    assert shown["back"] == "Wróć"
    assert shown["restart"] == polish["restart"] != english["restart"]
    assert shown["language"] == polish["language"] != english["language"]
    assert shown["toolbarLabel"] == polish["toolbar"]
    assert shown["close"] == polish["close"]
    assert shown["title"] == polish["title"]
    assert shown["choicesLabel"] == polish["answers"]
    assert shown["answerLabel"] == polish["answerLabel"] != english["answerLabel"]
    assert shown["placeholder"] == polish["placeholder"]
    assert shown["send"] == polish["send"]
    assert shown["panelLang"] == shown["toolbarLang"] == shown["logLang"] == "pl"
    assert shown["panelDir"] == shown["toolbarDir"] == "ltr"
    assert shown["focusInPanel"], "the focus left the panel when the chrome changed language"
    messages_in_polish = shown["messages"]

    # The text box's accessible name, as assistive technology gets it, is Polish too.
    await chat.choose("start")
    await chat.choose("poor")
    await chat.choose("care_home")
    await chat.wait_step("provider")
    await chat.inside.get_by_role("textbox", name=polish["answerLabel"], exact=True).wait_for()
    assert await chat.inside.get_by_role("textbox", name=english["answerLabel"]).count() == 0
    assert await chat.inside.get_by_role("button", name=polish["send"], exact=True).is_visible()
    await chat.textarea.fill("Dom Opieki")  # typed but not sent: must survive the switch
    await save_screenshot(page, "widget-language-pl")

    await pick_language(chat, "ar")
    await wait_ui_locale(chat, "ar")
    await chat.inside.locator('.ciw-panel[dir="rtl"]').wait_for()
    shown = await chrome(chat)
    assert shown["panelDir"] == "rtl"
    assert shown["toolbarDir"] == "rtl", "the toolbar is not right to left"
    assert shown["panelLang"] == shown["toolbarLang"] == shown["logLang"] == "ar"
    assert await chat.root.get_attribute("dir") == "rtl"
    assert await chat.evaluate("() => document.documentElement.dir") == "rtl"
    assert shown["back"] == arabic["back"] != polish["back"]
    assert shown["answerLabel"] == arabic["answerLabel"]
    assert shown["toolbarLabel"] == arabic["toolbar"]
    # Nothing of the conversation was lost: the earlier messages are all still there.
    assert shown["messages"] > messages_in_polish
    bot_texts = await chat.bot_texts()
    assert len(bot_texts) >= 4
    # A change of language comes back to the same question, with what was typed still there.
    await chat.wait_step("provider")
    assert await chat.textarea.input_value() == "Dom Opieki"
    assert shown["placeholder"] == arabic["placeholder"]
    await save_screenshot(page, "widget-language-ar")
    page.watch.assert_clean()


async def test_a_page_asking_for_welsh_shows_welsh_chrome_from_the_start(
    start_widget_server: Any, new_page: Any
) -> None:
    server = await start_widget_server()
    page = await new_page(viewport=PHONE)
    await page.route(
        server.base_url + "/welsh",
        lambda route: route.fulfill(status=200, content_type="text/html", body=WELSH_PAGE),
    )
    await page.goto(server.base_url + "/welsh")
    chat = Chat(page)
    welsh = await ui_text(page, server.base_url, "cy")
    english = await ui_text(page, server.base_url, "en")

    # Before the chat is opened, the launcher already speaks Welsh.
    await wait_launcher_locale(page, "cy")
    assert (
        await page.locator(".ciw-launcher-label").text_content()
        == welsh["launcher"]
        != english["launcher"]
    )
    assert await chat.frame_element.is_hidden()
    assert await chat.frame_element.get_attribute("title") == welsh["title"]

    await chat.launcher.click()
    await chat.wait_step("welcome")
    shown = await chrome(chat)
    assert shown["back"] == welsh["back"] != english["back"]
    assert shown["toolbarLabel"] == welsh["toolbar"]
    assert shown["title"] == welsh["title"]
    assert shown["answerLabel"] == welsh["answerLabel"] != english["answerLabel"]
    assert shown["panelLang"] == shown["logLang"] == "cy"
    assert shown["panelDir"] == "ltr"
    page.watch.assert_clean()
