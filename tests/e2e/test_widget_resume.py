"""Reloading resumes the conversation; a failed send is retried once, never twice."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import DESKTOP, PHONE, OpenChat

pytestmark = pytest.mark.browser

PROVIDER_PROMPT = "What is the name of the service, and where is it?"


async def test_reload_mid_conversation_resumes_at_the_same_step(open_chat: OpenChat) -> None:
    _, page, chat = await open_chat(viewport=PHONE)
    await chat.begin("mixed", "gp")
    session = await chat.session()
    bots_before = await chat.bot_texts()
    await chat.textarea.fill("Brookside")  # typed, not yet sent

    await page.reload()
    await chat.wait_turn_after(0)
    await chat.wait_step("provider")

    assert await chat.session() == session
    assert await chat.user_texts() == [
        "Start",
        "Both good and poor",
        "GP practice, walk-in centre or out-of-hours service",
    ]
    bots_after = await chat.bot_texts()
    assert bots_after == bots_before, (
        "the transcript is shown once, in order, with nothing repeated"
    )
    assert sum(PROVIDER_PROMPT in text for text in bots_after) == 1
    assert await chat.textarea.is_visible()
    assert await chat.textarea.input_value() == "Brookside", "the unsent draft survives a reload"

    # And it carries on from there.
    await chat.answer("Brookside Surgery, Stroud")
    if await chat.step() == "provider":
        await chat.choose("none")
    await chat.wait_step("relationship")

    # A token that no longer matches: the widget forgets it and starts afresh.
    await chat.evaluate(
        """() => {
            const key = Object.keys(sessionStorage).find(k => k.startsWith('care-intake-chat:'));
            const saved = JSON.parse(sessionStorage.getItem(key));
            saved.token = 'x'.repeat(43);
            sessionStorage.setItem(key, JSON.stringify(saved));
        }"""
    )
    await page.reload()
    await chat.wait_turn_after(0)
    await chat.wait_step("welcome")
    assert (await chat.session())["conversation_id"] != session["conversation_id"]
    assert await chat.user_texts() == []
    page.watch.assert_clean()


async def test_a_lost_response_is_retried_with_the_same_id_and_applied_once(
    open_chat: OpenChat,
) -> None:
    server, page, chat = await open_chat(viewport=DESKTOP)
    await chat.begin("poor", "care_home")

    seen_ids: list[str] = []
    failed_once = asyncio.Event()

    async def flaky(route: Any) -> None:
        body = json.loads(route.request.post_data or "{}")
        seen_ids.append(body.get("client_message_id"))
        if not failed_once.is_set():
            failed_once.set()
            # The server gets it and answers, but the answer never reaches the page.
            await route.fetch()
            await route.abort("internetdisconnected")
        else:
            await route.continue_()

    await page.route("**/api/v1/conversations/*/messages", flaky)
    typed = "Castle View Care Home, Lancaster"
    await chat.textarea.fill(typed)
    await chat.textarea.press("Enter")

    await chat.alert.get_by_text("Not sent — check your connection. Retrying…").wait_for()
    assert await chat.textarea.input_value() == typed, "what was typed is kept"
    assert await chat.user_texts() == ["Start", "Poor", "Care home"]
    retry = chat.alert.locator('button[data-action="retry"]')
    assert await retry.is_visible()

    before = await chat.turn()
    await retry.click()
    await chat.wait_turn_after(before)
    assert await chat.alert.is_hidden()
    assert await chat.textarea.input_value() == "" or await chat.textarea.is_hidden()
    assert seen_ids[0] and seen_ids[0] == seen_ids[1], seen_ids
    assert (await chat.user_texts()).count(typed) == 1

    # The server applied it once: one user entry with that text in the stored transcript.
    session = await chat.session()
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{server.base_url}/api/v1/conversations/{session['conversation_id']}",
            headers={"Authorization": f"Bearer {session['token']}"},
        ) as response,
    ):
        assert response.status == 200
        view = await response.json()
    user_entries = [e for e in view["transcript"] if e["role"] == "user"]
    assert [e["text"] for e in user_entries].count(typed) == 1
    await page.unroute("**/api/v1/conversations/*/messages")
    page.watch.assert_clean()


async def test_rate_limited_and_busy_replies_are_retried_after_a_wait(
    open_chat: OpenChat,
) -> None:
    _, page, chat = await open_chat(viewport=DESKTOP)

    statuses = [429, 503]

    async def limited(route: Any) -> None:
        if statuses:
            status = statuses.pop(0)
            await route.fulfill(
                status=status,
                headers={"Retry-After": "1", "Content-Type": "application/json"},
                body=json.dumps({"error": {"code": "x", "message": "wait"}}),
            )
        else:
            await route.continue_()

    await page.route("**/api/v1/conversations/*/messages", limited)
    before = await chat.turn()
    await chat.choice("start").click()
    await chat.alert.get_by_text("Please wait a moment", exact=False).wait_for()
    await chat.alert.get_by_text("The service is busy", exact=False).wait_for()
    await chat.wait_turn_after(before, wait_ms=15_000)
    await chat.wait_step("experience")
    assert await chat.user_texts() == ["Start"]

    # A 4xx other than 429 shows the server's own words and keeps what was typed.
    await chat.choose("poor")
    await chat.choose("hospital")
    await chat.wait_step("provider")

    async def too_large(route: Any) -> None:
        await route.fulfill(
            status=413,
            headers={"Content-Type": "application/json"},
            body=json.dumps(
                {"error": {"code": "too_large", "message": "That message is too large."}}
            ),
        )

    await page.unroute("**/api/v1/conversations/*/messages")
    await page.route("**/api/v1/conversations/*/messages", too_large)
    await chat.textarea.fill("A very long answer")
    await chat.send_button.click()
    await chat.alert.get_by_text("That message is too large.").wait_for()
    assert await chat.textarea.input_value() == "A very long answer"
    assert await chat.textarea.is_editable()
    await page.unroute("**/api/v1/conversations/*/messages")
    page.watch.assert_clean()
