"""A whole report through the widget on the service's own page, and hostile text shown as text."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import DESKTOP, Chat, OpenChat, save_screenshot

pytestmark = pytest.mark.browser

REFERENCE = re.compile(r"^[A-Z0-9-]{6,20}$")


async def test_whole_report_by_clicking_and_typing(start_widget_server: Any, new_page: Any) -> None:
    server = await start_widget_server()
    page = await new_page(viewport=DESKTOP)
    await page.context.grant_permissions(
        ["clipboard-read", "clipboard-write"], origin=server.base_url
    )
    await page.goto(server.base_url + "/")
    chat = Chat(page)

    # The page opens the chat by itself (data-open); the chat is in its frame.
    await chat.frame_element.wait_for(state="visible")
    await chat.panel.wait_for(state="visible")
    assert await chat.launcher.is_hidden()
    assert await chat.inside.locator('.ciw-log[role="log"][aria-live="polite"]').count() == 1

    await chat.complete_report()

    reference = (await chat.inside.locator(".ciw-reference-value").text_content() or "").strip()
    assert REFERENCE.match(reference), reference
    await chat.inside.locator(".ciw-reference").wait_for(state="visible")
    assert reference in " ".join(await chat.bot_texts())
    assert await chat.root.get_attribute("data-done") == "true"
    assert await chat.textarea.is_hidden()
    # Focus went to the Copy button: the next thing a person would want.
    assert await chat.has_focus("el.classList.contains('ciw-copy')")

    # What was typed is in the transcript as typed.
    users = await chat.user_texts()
    assert "Castle View Care Home, Lancaster" in users
    assert "My dad was left without water for hours.\nStaff did not answer the bell." in users
    await save_screenshot(page, "widget-desktop-confirmation")

    await chat.inside.locator(".ciw-copy").click()
    frame = await chat.frame()
    await frame.wait_for_function(
        "() => document.querySelector('.ciw-copy').textContent === 'Copied'"
    )
    assert await frame.evaluate("() => navigator.clipboard.readText()") == reference

    # A new conversation: a fresh id, the welcome again, nothing of the old one shown.
    old = await chat.session()
    before = await chat.turn()
    await chat.inside.locator(".ciw-new").click()
    await chat.wait_turn_after(before)
    await chat.wait_step("welcome")
    assert (await chat.session())["conversation_id"] != old["conversation_id"]
    assert await chat.user_texts() == []
    assert await chat.inside.locator(".ciw-reference").is_hidden()
    page.watch.assert_clean()


async def test_markup_in_an_answer_is_shown_as_text_and_never_run(open_chat: OpenChat) -> None:
    _, page, chat = await open_chat(viewport=DESKTOP)
    await chat.begin("good", "dentist")

    hostile = "<img src=x onerror=alert(1)>"
    await chat.answer(hostile)
    if await chat.step() == "provider":
        await chat.choose("none")
    await chat.choose("self")
    await chat.wait_step("what_happened")
    script = '"><script>alert(2)</script><b>bold</b> & <a href="javascript:alert(3)">x</a>'
    await chat.answer(script)
    await page.wait_for_timeout(300)

    users = await chat.user_texts()
    assert hostile in users
    assert script in users
    assert await chat.inside.locator(".ciw-log img, .ciw-log script, .ciw-log b").count() == 0
    assert await chat.inside.locator('.ciw-log a[href^="javascript"]').count() == 0

    # The same after a reload, when the transcript comes back from the server.
    await page.reload()
    await chat.wait_turn_after(0)
    users = await chat.user_texts()
    assert hostile in users and script in users
    assert await chat.inside.locator(".ciw-log img, .ciw-log script, .ciw-log b").count() == 0
    await page.wait_for_timeout(300)
    page.watch.assert_clean()
