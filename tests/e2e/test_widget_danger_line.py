"""The 999 line is inside the chat, not only on the page behind it: always visible, high
contrast, translated, read once by a screen reader (not a live region, so not repeated with
every message), and on a 320 px phone it never covers the answer box."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import DESKTOP, Chat, OpenChat, save_screenshot

pytestmark = pytest.mark.browser

NARROW = {"width": 320, "height": 568}


async def layout(chat: Chat) -> dict[str, Any]:
    return dict(
        await chat.evaluate(
            """() => {
                const line = document.querySelector('.ciw-danger');
                const box = r => { const b = r.getBoundingClientRect();
                    return {top: b.top, bottom: b.bottom, left: b.left, right: b.right}; };
                const live = line.closest('[aria-live], [role=alert], [role=status], [role=log]');
                const style = getComputedStyle(line);
                return {
                    text: line.textContent, count: document.querySelectorAll('.ciw-danger').length,
                    live: live ? live.outerHTML.slice(0, 80) : null, hidden: line.getAttribute('aria-hidden'),
                    line: box(line), input: box(document.querySelector('.ciw-input')),
                    weight: style.fontWeight, color: style.color,
                    background: getComputedStyle(line.parentElement).backgroundColor,
                    atTop: document.elementFromPoint(
                        (box(line).left + box(line).right) / 2, (box(line).top + box(line).bottom) / 2
                    ) === line,
                };
            }"""
        )
    )


@pytest.mark.parametrize("viewport", [NARROW, DESKTOP], ids=["320px", "desktop"])
async def test_the_999_line_stays_in_view_and_clear_of_the_input(
    open_chat: OpenChat, viewport: dict[str, int]
) -> None:
    _, page, chat = await open_chat(viewport=viewport)
    await chat.begin("poor", "care_home")  # the provider question: a text box
    assert await chat.textarea.is_visible()
    await chat.textarea.fill("A long answer\n" * 8)  # the box grows; the line must not move over it

    shown = await layout(chat)
    assert shown["text"] == "In danger now? Call 999"
    assert shown["count"] == 1
    assert shown["live"] is None, f"inside a live region, read again and again: {shown['live']}"
    assert shown["hidden"] is None
    assert int(shown["weight"]) >= 700
    assert shown["atTop"], "something covers the 999 line"
    line, box = shown["line"], shown["input"]
    assert line["bottom"] <= box["top"] or line["top"] >= box["bottom"], (line, box)
    assert line["top"] >= 0 and line["bottom"] <= viewport["height"]
    await save_screenshot(page, f"widget-999-{viewport['width']}px")

    # Still there, unchanged, after more turns: part of the frame, not of the conversation.
    await chat.answer("Castle View Care Home, Lancaster")
    again = await layout(chat)
    assert again["text"] == shown["text"] and again["count"] == 1 and again["atTop"]
    page.watch.assert_clean()


async def test_the_999_line_is_translated(start_widget_server: Any, new_page: Any) -> None:
    server = await start_widget_server()
    page = await new_page(viewport=DESKTOP)
    await page.goto(server.base_url + "/chat.html?locale=pl")
    frame_line = page.locator(".ciw-root[data-ui-locale='pl'] .ciw-danger")
    await frame_line.wait_for(state="visible")
    assert "999" in (await frame_line.text_content() or "")
    assert (await frame_line.text_content() or "") != "In danger now? Call 999"
