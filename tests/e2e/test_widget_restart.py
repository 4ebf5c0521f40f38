"""Nothing destructive by accident: Start again asks once (the same confirmation as Cancel),
saying what will be lost; after a report is sent the commands that can no longer do anything
are gone, and what still works (copy the reference, start a new report, exit) stays."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import PHONE, OpenChat, axe_violations, save_screenshot

pytestmark = pytest.mark.browser

NARROW = {"width": 320, "height": 640}
DRAFT = "The night staff shouted at her"


async def test_start_again_asks_once_saying_what_is_lost(open_chat: OpenChat) -> None:
    _, page, chat = await open_chat(viewport=PHONE)
    await chat.begin("poor", "care_home")
    await chat.answer("Castle View Care Home, Lancaster")
    if await chat.step() == "provider":
        await chat.choose("none")
    await chat.wait_step("relationship")
    await chat.choose("self")
    await chat.wait_step("when")
    await chat.textarea.fill(DRAFT)
    turn = await chat.turn()
    confirm = chat.inside.locator(".ciw-confirm")
    restart = chat.tool("restart")

    await restart.click()
    await confirm.wait_for(state="visible")
    assert await confirm.get_attribute("role") == "alertdialog"
    said = await confirm.text_content() or ""
    assert "Start again from the beginning?" in said
    assert "delete the answers you have given so far" in said
    assert "We keep nothing" not in said, "not Cancel's words"
    assert await chat.has_focus("el.dataset.action === 'restart-keep'")
    assert await restart.get_attribute("aria-expanded") == "true"
    await save_screenshot(page, "widget-restart-confirm-360px")

    # Escape keeps everything, focus back on Start again; so does "No, carry on".
    await page.keyboard.press("Escape")
    await confirm.wait_for(state="hidden")
    assert await chat.has_focus("el.dataset.command === 'restart'")
    assert await restart.get_attribute("aria-expanded") == "false"
    await restart.click()
    await chat.inside.locator('[data-action="restart-keep"]').click()
    await confirm.wait_for(state="hidden")
    assert await chat.turn() == turn and await chat.step() == "when"
    assert await chat.textarea.input_value() == DRAFT

    # Cancel still asks in its own words, in the same place (one component).
    await chat.tool("cancel").click()
    await confirm.wait_for(state="visible")
    assert "We keep nothing" in (await confirm.text_content() or "")
    assert await chat.inside.locator(".ciw-confirm").count() == 1
    await chat.inside.locator('[data-action="cancel-keep"]').click()
    await confirm.wait_for(state="hidden")

    # Confirmed: back to the beginning.
    await restart.click()
    before = await chat.turn()
    await chat.inside.locator('[data-action="restart-confirm"]').click()
    await chat.wait_turn_after(before)
    await chat.wait_step("welcome")
    page.watch.assert_clean()


async def test_after_sending_only_what_still_works_is_offered(
    open_chat: OpenChat, axe_script: Any
) -> None:
    # The page's CSP rightly refuses injected scripts; axe is a test tool, so bypass it here.
    _, page, chat = await open_chat(viewport=NARROW, bypass_csp=True)
    await chat.complete_report()

    assert await chat.inside.locator(".ciw-toolbar").is_hidden()
    for command in ("back", "restart", "help", "cancel", "privacy", "language"):
        assert await chat.tool(command).is_hidden(), f"{command} is still offered"
    assert await chat.inside.locator(".ciw-copy").is_visible()
    assert await chat.inside.locator(".ciw-new").is_visible()
    assert await chat.inside.locator(".ciw-exit").is_visible()
    assert await chat.inside.locator(".ciw-danger").is_visible()
    await save_screenshot(page, "widget-submitted-320px")
    found = await axe_violations(page, axe_script)
    assert found == [], found

    # A new report brings the commands back.
    await chat.inside.locator(".ciw-new").click()
    await chat.wait_step("welcome")
    assert await chat.tool("restart").is_visible()
    page.watch.assert_clean()
