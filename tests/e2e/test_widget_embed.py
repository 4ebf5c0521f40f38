"""The widget embedded by one script tag on another site (another loopback port = another
origin): it works where INTAKE_ALLOWED_ORIGINS lists that site, and says so clearly where not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    DESKTOP,
    Chat,
    PartnerSite,
    StartPartnerSite,
    axe_violations,
    save_screenshot,
)

pytestmark = pytest.mark.browser

EMBED_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>A partner's page</title></head>
<body>
<main><h1>Our care home</h1><p>We welcome your feedback.</p>
<a href="#top" id="partner-link">A link on the partner's page</a></main>
<script src="{api}/widget.js" defer data-title="Feedback about care"></script>
</body>
</html>
"""


@pytest.fixture
async def embed_site(partner_site: StartPartnerSite) -> PartnerSite:
    return await partner_site({"/": EMBED_PAGE})


async def test_embedded_on_an_allowed_origin_the_conversation_starts(
    start_widget_server: Any, embed_site: PartnerSite, new_page: Any
) -> None:
    server = await start_widget_server(allowed_origins=(embed_site.origin,))
    embed_site.api = server.base_url
    page = await new_page(viewport=DESKTOP)
    await page.goto(embed_site.origin + "/")
    chat = Chat(page)

    # Closed until asked: a launcher button, labelled, that controls the (hidden) frame.
    await chat.launcher.wait_for(state="visible")
    await save_screenshot(page, "widget-embed-launcher")
    await chat.frame_element.wait_for(state="attached")
    assert await chat.frame_element.is_hidden()
    assert await chat.launcher.get_attribute("aria-expanded") == "false"
    frame_id = await chat.frame_element.get_attribute("id")
    assert await chat.launcher.get_attribute("aria-controls") == frame_id
    css = await page.evaluate(
        "() => [...document.querySelectorAll('link[rel=stylesheet]')].map(l => l.href)"
    )
    assert css == [server.base_url + "/widget.css"]
    # The frame is the chat service's own page, on the chat service's own origin.
    src = await chat.frame_element.get_attribute("src") or ""
    assert src.startswith(server.base_url + "/chat.html?")
    assert await chat.frame_element.get_attribute("title") == "Feedback about care"

    await chat.launcher.click()
    await chat.wait_step("welcome")
    assert await chat.inside.locator(".ciw-title").text_content() == "Feedback about care"
    # Focus moved into the chat's frame.
    assert await page.evaluate(
        "() => document.activeElement === document.querySelector('iframe.ciw-frame')"
    )
    assert await chat.has_focus("el.closest('.ciw-panel')")
    await chat.choose("start")
    await chat.wait_step("experience")
    assert await chat.alert.is_hidden()

    # Escape closes it and gives focus back to the launcher; opening again keeps the place.
    await page.keyboard.press("Escape")
    await chat.frame_element.wait_for(state="hidden")
    assert await page.evaluate(
        "() => document.activeElement === document.querySelector('.ciw-launcher')"
    )
    assert await chat.launcher.get_attribute("aria-expanded") == "false"
    await page.keyboard.press("Enter")
    await chat.frame_element.wait_for(state="visible")
    await page.wait_for_function(
        "() => document.activeElement === document.querySelector('iframe.ciw-frame')"
    )
    frame = await chat.frame()
    await frame.wait_for_function(
        "() => document.activeElement.getAttribute('data-choice-id') === 'poor'"
    )
    assert await chat.user_texts() == ["Start"]

    # The close button does the same as Escape.
    await chat.inside.locator(".ciw-close").click()
    await chat.frame_element.wait_for(state="hidden")
    assert await chat.launcher.is_visible()

    # A reload on the partner's page: the chat reopens itself where it was (its storage is
    # on the chat's origin; the page only hears "open").
    await page.reload()
    await chat.frame_element.wait_for(state="visible")
    await chat.wait_step("experience")
    assert await chat.user_texts() == ["Start"]
    assert await chat.launcher.is_hidden()
    page.watch.assert_clean()


async def test_embedded_on_an_origin_not_allowed_the_launcher_says_so(
    start_widget_server: Any, embed_site: PartnerSite, new_page: Any, axe_script: Path
) -> None:
    server = await start_widget_server(allowed_origins=("https://some-other-site.example",))
    embed_site.api = server.base_url
    page = await new_page(viewport=DESKTOP)
    await page.goto(embed_site.origin + "/")
    chat = Chat(page)
    await chat.launcher.click()

    notice = page.locator(".ciw-notice")
    await notice.get_by_text("This chat cannot be used on this website.").wait_for()
    assert await chat.embed.get_attribute("data-error") == "origin_not_allowed"
    await save_screenshot(page, "widget-embed-refused")
    link = notice.locator("a")
    assert await link.get_attribute("href") == server.base_url + "/"
    found = await axe_violations(page, axe_script)
    assert not found, found
    # Focus is in the notice; Escape closes it and gives focus back to the launcher.
    assert await page.evaluate("() => !!document.activeElement.closest('.ciw-notice')")
    await page.keyboard.press("Escape")
    assert await notice.is_hidden()
    assert await page.evaluate(
        "() => document.activeElement === document.querySelector('.ciw-launcher')"
    )
    # The loader did not even try to load the chat here.
    assert not await chat.frame_element.get_attribute("src")
    assert not page.watch.dialogs and not page.watch.page_errors
