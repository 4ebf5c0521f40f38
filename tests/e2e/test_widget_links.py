"""The next step as real links: a message's `links` shown as anchors that open a new tab,
https only (anything else is never made into a link), and the page still passes axe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.config import DEFAULT_LINKS
from tests.e2e.conftest import DESKTOP, PHONE, Chat, OpenChat, axe_violations, save_screenshot

pytestmark = pytest.mark.browser

CONTACT = "https://example.org/contact-us"
NHS = "https://example.org/complain-nhs"


async def anchors(chat: Chat) -> list[dict[str, str]]:
    found: list[dict[str, str]] = await chat.evaluate(
        """() => Array.from(document.querySelectorAll('.ciw-msg .ciw-links a')).map(a => ({
            label: a.textContent, href: a.getAttribute('href'),
            target: a.getAttribute('target'), rel: a.getAttribute('rel')}))"""
    )
    return found


async def test_links_are_real_anchors_opening_a_new_tab_and_axe_stays_clean(
    start_widget_server: Any, open_chat: OpenChat, axe_script: Path
) -> None:
    links = {**DEFAULT_LINKS, "contact_us": CONTACT, "complain_nhs": NHS}
    server = await start_widget_server(links=links)
    for viewport in (DESKTOP, PHONE):
        _, page, chat = await open_chat(server=server, viewport=viewport, bypass_csp=True)
        welcome = await anchors(chat)
        assert welcome == [
            {
                "label": "Other ways to contact us",
                "href": CONTACT,
                "target": "_blank",
                "rel": "noopener noreferrer",
            }
        ]

        await chat.choose("start")
        await chat.choose("poor")
        await chat.choose("hospital")
        await chat.wait_step("provider")
        await chat.answer("Qwxz Zzyq Nowhere Hospital")
        if await chat.step() == "provider":
            await chat.choose("none")
        await chat.wait_step("relationship")
        await chat.choose("self")
        await chat.choose("skip")  # when
        await chat.choose("skip")  # part of the service
        await chat.answer("They did not listen.")
        await chat.wait_step("share_with_service")
        await chat.choose("yes")
        await chat.wait_step("risk")
        await chat.choose("no")
        await chat.choose("neither")
        await chat.choose("not_yet")
        await chat.wait_step("complaint_info")
        shown = {a["label"]: a for a in await anchors(chat)}
        assert shown["Complain about NHS care"]["href"] == NHS
        for label, key in (
            ("Parliamentary and Health Service Ombudsman", "ombudsman_nhs"),
            ("Local Government and Social Care Ombudsman", "ombudsman_social_care"),
            ("Find your local council", "find_council"),
            ("How to complain about a service", "complain_provider"),
        ):
            assert shown[label]["href"] == DEFAULT_LINKS[key], label
        assert all(a["target"] == "_blank" and "noopener" in a["rel"] for a in shown.values())
        found = await axe_violations(page, axe_script)
        assert not found, f"with links ({viewport}): {found}"
        await save_screenshot(page, f"widget-links-{viewport['width']}")
        page.watch.assert_clean()
        await page.context.close()


async def test_an_address_that_is_not_https_is_never_made_a_link(open_chat: OpenChat) -> None:
    _, page, chat = await open_chat(viewport=DESKTOP)

    async def hostile(route: Any) -> None:
        response = await route.fetch()
        body = await response.json()
        body["messages"][-1]["links"] = [
            {"label": "Plain http", "url": "http://example.org/"},
            {"label": "Script", "url": "javascript:alert(1)"},
            {"label": "Data", "url": "data:text/html,<b>x</b>"},
            {"label": "Spaced", "url": "https://example.org/a b"},
            {"label": "No host", "url": "https:///path"},
            {"label": "Fine", "url": "https://example.org/fine"},
        ]
        await route.fulfill(response=response, body=json.dumps(body))

    await page.route("**/api/v1/conversations/*/messages", hostile)
    await chat.choose("start")
    await chat.wait_step("experience")
    labels = [a["label"] for a in await anchors(chat) if a["label"] != "Other ways to contact us"]
    assert labels == ["Fine"]
    texts = " ".join(await chat.inside.locator(".ciw-log").all_text_contents())
    assert "Plain http" not in texts and "Script" not in texts
    await page.unroute("**/api/v1/conversations/*/messages")
