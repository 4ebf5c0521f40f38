"""Accessibility: an axe-core scan, a whole report by keyboard alone on a phone-sized screen,
right-to-left languages, small screens and zoom, reduced motion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import DESKTOP, PHONE, Chat, OpenChat, axe_violations, save_screenshot

pytestmark = pytest.mark.browser


def describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{v['impact']} {v['id']}: {v['help']}\n  " + "\n  ".join(v["nodes"]) for v in violations
    )


async def test_axe_finds_no_serious_problems(
    start_widget_server: Any, open_chat: OpenChat, axe_script: Path
) -> None:
    server = await start_widget_server()
    for viewport in (DESKTOP, PHONE):
        # The page's CSP rightly refuses injected scripts; axe is a test tool, so bypass it here.
        _, page, chat = await open_chat(server=server, viewport=viewport, bypass_csp=True)
        found = await axe_violations(page, axe_script)
        assert not found, f"at welcome ({viewport}):\n{describe(found)}"

        await chat.choose("start")
        await chat.choose("poor")
        await chat.choose("hospital")
        await chat.wait_step("provider")
        found = await axe_violations(page, axe_script)
        assert not found, f"at a text step ({viewport}):\n{describe(found)}"

        # With Cancel's confirmation showing.
        await chat.tool("cancel").click()
        await chat.inside.locator(".ciw-confirm").wait_for(state="visible")
        found = await axe_violations(page, axe_script)
        assert not found, f"with the cancel confirmation ({viewport}):\n{describe(found)}"
        await chat.inside.locator('[data-action="cancel-keep"]').click()

        # With an error showing, too.
        await page.route("**/api/v1/conversations/*/messages", lambda route: route.abort())
        await chat.textarea.fill("St Elsewhere")
        await chat.textarea.press("Enter")
        await chat.alert.locator("button").wait_for()
        found = await axe_violations(page, axe_script)
        assert not found, f"with an error ({viewport}):\n{describe(found)}"
        await page.unroute("**/api/v1/conversations/*/messages")
        await page.context.close()


async def tab_to(chat: Chat, condition: str, *, limit: int = 40, backwards: bool = False) -> None:
    """Press Tab (or Shift+Tab) until `condition` (a JS expression on `el`) holds for the
    element focused in the chat's frame."""
    for _ in range(limit):
        if await chat.has_focus(condition):
            return
        await chat.page.keyboard.press("Shift+Tab" if backwards else "Tab")
    raise AssertionError(f"could not reach an element where {condition} by keyboard")


async def keyboard_choose(
    page: Any, chat: Chat, choice_id: str, key: str = "Enter", *, backwards: bool = False
) -> None:
    await tab_to(chat, f"el.getAttribute('data-choice-id') === {choice_id!r}", backwards=backwards)
    before = await chat.turn()
    await page.keyboard.press(key)
    await chat.wait_turn_after(before)


async def keyboard_type(page: Any, chat: Chat, text: str) -> None:
    # After a text question, focus is already in the box.
    assert await chat.has_focus("el.classList.contains('ciw-input')")
    before = await chat.turn()
    await page.keyboard.type(text)
    await page.keyboard.press("Enter")
    await chat.wait_turn_after(before)


async def test_a_whole_report_by_keyboard_on_a_phone(open_chat: OpenChat) -> None:
    _, page, chat = await open_chat(viewport=PHONE, has_touch=True)

    # Full screen on a phone; everything reachable from the start of the page.
    for box in (await chat.frame_element.bounding_box(), await chat.panel.bounding_box()):
        assert box is not None
        assert box["width"] == PHONE["width"] and box["height"] == PHONE["height"]
    await tab_to(chat, "el.getAttribute('data-choice-id') === 'start'")
    focus_ring = await chat.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert focus_ring == "solid", "keyboard focus is visible"

    # Escape closes, focus returns to the launcher; Enter opens it again.
    await page.keyboard.press("Escape")
    await chat.frame_element.wait_for(state="hidden")
    assert await page.evaluate("() => document.activeElement.classList.contains('ciw-launcher')")
    await page.keyboard.press("Enter")
    await chat.frame_element.wait_for(state="visible")

    await keyboard_choose(page, chat, "start")
    await keyboard_choose(page, chat, "poor", key="Space")
    await keyboard_choose(page, chat, "care_home")
    await chat.wait_step("provider")
    await keyboard_type(page, chat, "Castle View, Lancaster")
    if await chat.step() == "provider":
        # Matches: focus is on the first one.
        assert await chat.has_focus("el.classList.contains('ciw-choice')")
        before = await chat.turn()
        await page.keyboard.press("Enter")
        await chat.wait_turn_after(before)
    await keyboard_choose(page, chat, "self")
    await chat.wait_step("when")
    await keyboard_type(page, chat, "March")
    await chat.wait_step("service_part")
    # Focus is in the box; Skip comes just before it in reading order.
    assert await chat.has_focus("el.classList.contains('ciw-input')")
    await keyboard_choose(page, chat, "skip", key="Space", backwards=True)
    await chat.wait_step("what_happened")
    assert await chat.has_focus("el.classList.contains('ciw-input')")
    before = await chat.turn()
    await page.keyboard.type("The night staff shouted at residents.")
    await page.keyboard.press("Shift+Enter")
    await page.keyboard.type("It happened most nights.")
    assert await chat.turn() == before, "Shift+Enter adds a line; it does not send"
    await page.keyboard.press("Enter")
    await chat.wait_turn_after(before)
    assert (
        "The night staff shouted at residents.\nIt happened most nights." in await chat.user_texts()
    )

    # Back, with the toolbar, then answer again.
    await chat.wait_step("share_with_service")
    await tab_to(chat, "el.getAttribute('data-command') === 'back'", backwards=True)
    before = await chat.turn()
    await page.keyboard.press("Enter")
    await chat.wait_turn_after(before)
    await chat.wait_step("what_happened")
    await tab_to(chat, "el.classList.contains('ciw-input')")
    await keyboard_type(page, chat, "The night staff shouted at residents.")
    await chat.wait_step("share_with_service")
    await keyboard_choose(page, chat, "yes")
    await chat.wait_step("risk")
    await keyboard_choose(page, chat, "not_sure")
    await keyboard_choose(page, chat, "police")
    await keyboard_choose(page, chat, "formal")
    await keyboard_choose(page, chat, "continue")
    await chat.wait_step("contact")
    await keyboard_choose(page, chat, "no")
    await chat.wait_step("referral")
    await keyboard_choose(page, chat, "no")
    await chat.wait_step("summary")
    await save_screenshot(page, "widget-phone-summary")
    await keyboard_choose(page, chat, "submit", key="Space")
    await chat.wait_step("submitted")

    reference = await chat.inside.locator(".ciw-reference-value").text_content()
    assert reference
    assert await chat.has_focus("el.classList.contains('ciw-copy')")
    await save_screenshot(page, "widget-phone-confirmation")
    await tab_to(chat, "el.classList.contains('ciw-new')")
    before = await chat.turn()
    await page.keyboard.press("Enter")
    await chat.wait_turn_after(before)
    await chat.wait_step("welcome")
    page.watch.assert_clean()


async def test_right_to_left_language_sets_dir_and_lang(open_chat: OpenChat) -> None:
    _, page, chat = await open_chat(viewport=PHONE)
    assert await chat.panel.get_attribute("dir") == "ltr"
    assert await chat.log.get_attribute("lang") == "en"

    before = await chat.turn()
    await chat.tool("language").click()
    await chat.wait_turn_after(before)
    await chat.wait_step("language")
    if await chat.choice("ar").count() == 0:
        pytest.skip("no Arabic catalog is offered by this build")
    await chat.choose("ar")
    await chat.inside.locator('.ciw-panel[dir="rtl"]').wait_for()
    assert await chat.log.get_attribute("lang") == "ar"
    await chat.choose("start")
    await chat.choose("poor")
    await save_screenshot(page, "widget-phone-rtl")

    # A reload keeps the direction.
    await page.reload()
    await chat.wait_turn_after(0)
    assert await chat.panel.get_attribute("dir") == "rtl"
    assert await chat.log.get_attribute("lang") == "ar"
    page.watch.assert_clean()


async def test_narrow_screens_zoom_and_reduced_motion(
    start_widget_server: Any, open_chat: OpenChat
) -> None:
    server = await start_widget_server()
    # 320 CSS px wide (WCAG reflow), and 1280 px at 200% zoom (= 640 CSS px).
    for viewport, scale in (({"width": 320, "height": 640}, 1), ({"width": 640, "height": 400}, 2)):
        _, page, chat = await open_chat(server=server, viewport=viewport, device_scale_factor=scale)
        await chat.choose("start")
        await chat.choose("poor")
        await chat.choose("gp")
        await chat.wait_step("provider")
        overflow = await chat.evaluate(
            "() => { const p = document.querySelector('.ciw-panel');"
            " return p.scrollWidth - p.clientWidth; }"
        )
        assert overflow <= 0, "no sideways scrolling inside the panel"
        send = await chat.send_button.bounding_box()
        assert send is not None and send["height"] >= 44 and send["width"] >= 44
        assert send["x"] + send["width"] <= viewport["width"]
        for button in await chat.inside.locator(".ciw-panel button:visible").all():
            size = await button.bounding_box()
            assert size is not None and size["height"] >= 44, await button.text_content()
        await save_screenshot(page, f"widget-{viewport['width']}px")
        # Reduced motion (the fixture asks for it): nothing animates.
        animations = await chat.evaluate(
            "() => [...document.querySelectorAll('.ciw-root *')]"
            ".map(e => getComputedStyle(e).animationName).filter(n => n !== 'none')"
        )
        assert animations == []
        page.watch.assert_clean()
