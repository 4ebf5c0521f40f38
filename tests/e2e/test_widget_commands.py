"""Help, Privacy and Cancel are in the toolbar at every step, beside Back, Start again and
Language. Help and Privacy answer and keep the step; Cancel asks once, saying that nothing
will be kept, and then the server keeps nothing."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import DESKTOP, PHONE, Chat, OpenChat, save_screenshot

pytestmark = pytest.mark.browser

TOOLS = ["back", "restart", "language", "help", "privacy", "cancel"]
PROVIDER_TEXT = "Castle View Care Home, Lancaster"
DRAFT = "They left my mother alone all night"


async def reach(chat: Chat, kind: str) -> None:
    """A choice step (how they know the service) or a text step (when it happened), with
    something already typed and sent on the way."""
    await chat.begin("poor", "care_home")
    await chat.answer(PROVIDER_TEXT)
    if await chat.step() == "provider":
        await chat.choose("none")
    await chat.wait_step("relationship")
    if kind == "text":
        await chat.choose("self")
        await chat.wait_step("when")
        await chat.textarea.fill(DRAFT)


async def click_tool(chat: Chat, command: str) -> None:
    before = await chat.turn()
    await chat.tool(command).click()
    await chat.wait_turn_after(before)


async def get_conversation(base_url: str, session: dict[str, str]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{base_url}/api/v1/conversations/{session['conversation_id']}",
            headers={"Authorization": f"Bearer {session['token']}"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return dict(await response.json())


@pytest.mark.parametrize(("kind", "step"), [("choice", "relationship"), ("text", "when")])
async def test_help_and_privacy_answer_and_keep_the_step(
    open_chat: OpenChat, kind: str, step: str
) -> None:
    _, page, chat = await open_chat(viewport=DESKTOP)
    tools = await chat.inside.locator(".ciw-tool").evaluate_all(
        "nodes => nodes.map(n => n.dataset.command)"
    )
    assert tools == TOOLS
    await reach(chat, kind)

    bots_before = len(await chat.bot_texts())
    await click_tool(chat, "help")
    await chat.wait_step(step)
    new = (await chat.bot_texts())[bots_before:]
    assert new, "help said nothing"
    assert any("999" in text or "help" in text.lower() for text in new), new
    assert (await chat.user_texts())[-1] == "Help"
    if kind == "choice":
        assert await chat.choice("friend_family").is_visible()
    else:
        assert await chat.textarea.is_visible()
        assert await chat.textarea.input_value() == DRAFT, "what was typed is kept"

    bots_before = len(await chat.bot_texts())
    await click_tool(chat, "privacy")
    await chat.wait_step(step)
    new = (await chat.bot_texts())[bots_before:]
    assert any("privacy" in text.lower() for text in new), new
    assert await chat.log.locator("a.ciw-link[href^='https://']").count() >= 1
    if kind == "text":
        assert await chat.textarea.input_value() == DRAFT
    page.watch.assert_clean()


@pytest.mark.parametrize(("kind", "viewport"), [("choice", DESKTOP), ("text", PHONE)])
async def test_cancel_asks_once_then_nothing_is_kept(
    open_chat: OpenChat, kind: str, viewport: dict[str, int]
) -> None:
    server, page, chat = await open_chat(viewport=viewport)
    await reach(chat, kind)
    step = await chat.step()
    session = await chat.session()
    turn = await chat.turn()

    # Cancel first asks, saying what would be lost; focus is on the safe answer.
    confirm = chat.inside.locator(".ciw-confirm")
    await chat.tool("cancel").click()
    await confirm.wait_for(state="visible")
    assert await confirm.get_attribute("role") == "alertdialog"
    assert "We keep nothing" in (await confirm.text_content() or "")
    assert await chat.has_focus("el.dataset.action === 'cancel-keep'")
    assert await chat.tool("cancel").get_attribute("aria-expanded") == "true"
    await save_screenshot(page, f"widget-cancel-confirm-{viewport['width']}px")

    # Escape (or "No, carry on") leaves everything as it was, focus back on Cancel.
    await page.keyboard.press("Escape")
    await confirm.wait_for(state="hidden")
    assert await chat.has_focus("el.dataset.command === 'cancel'")
    assert await chat.frame_element.is_visible(), "Escape closed the confirmation, not the chat"
    await chat.tool("cancel").click()
    await chat.inside.locator('[data-action="cancel-keep"]').click()
    await confirm.wait_for(state="hidden")
    assert await chat.turn() == turn and await chat.step() == step
    if kind == "text":
        assert await chat.textarea.input_value() == DRAFT

    # Confirmed: the conversation ends, and nothing of it is kept, here or on the server.
    await chat.tool("cancel").click()
    before = await chat.turn()
    await chat.inside.locator('[data-action="cancel-confirm"]').click()
    await chat.wait_turn_after(before)
    assert await chat.root.get_attribute("data-done") == "true"
    bots = await chat.bot_texts()
    assert len(bots) == 1 and "not kept anything" in bots[0], "only the goodbye is left on screen"
    assert await chat.user_texts() == []
    assert await chat.has_focus("el.classList.contains('ciw-new')")
    assert await chat.inside.locator(".ciw-new").is_visible()
    stored = await chat.evaluate(
        "() => Object.keys(sessionStorage).filter(k => k.startsWith('care-intake'))"
    )
    assert stored == [], "the token, the id and the draft are gone from the browser too"
    await save_screenshot(page, f"widget-cancelled-{viewport['width']}px")

    view = await get_conversation(server.base_url, session)
    assert view["done"] is True
    assert view["reference"] is None
    assert [e for e in view.get("transcript", []) if e["role"] == "user"] == []
    everything = json.dumps(view)
    assert PROVIDER_TEXT not in everything and DRAFT not in everything

    # A reload starts afresh, closed: nothing is left to resume.
    await page.reload()
    await chat.frame_element.wait_for(state="visible")  # the page opens the chat itself
    await chat.wait_step("welcome")
    assert (await chat.session())["conversation_id"] != session["conversation_id"]
    assert await chat.user_texts() == []
    page.watch.assert_clean()
