"""GOV.UK's "Exit this page" for someone who may be overheard or watched: the button,
or Shift pressed three times, replaces the whole page with a neutral one at once, and the
chat's token and draft are gone from its origin's storage, so Back and a reload show nothing.

The chat is in a frame; only the loader on the top page can move it, when the frame asks."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import (
    DESKTOP,
    PHONE,
    Chat,
    OpenChat,
    PartnerSite,
    StartPartnerSite,
    save_screenshot,
)

pytestmark = pytest.mark.browser

NARROW = {"width": 320, "height": 640}
DRAFT = "He reads my messages"
HOST_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>A partner's page</title></head>
<body><main><h1>Our care home</h1></main>
<script src="{api}/widget.js" defer data-open="true"></script>
</body>
</html>
"""
NEUTRAL_PAGE = "<!doctype html><html lang='en'><title>Weather</title><h1>Weather</h1></html>"


@pytest.fixture
async def site(partner_site: StartPartnerSite) -> PartnerSite:
    """A partner's page embedding the widget (/) and a neutral page to leave for (/weather)."""
    return await partner_site({"/": HOST_PAGE, "/weather": NEUTRAL_PAGE})


async def chat_storage(page: Any, origin: str) -> list[str]:
    """The chat's keys in `origin`'s sessionStorage for this tab (read from a plain file of
    that origin, so that nothing starts a new conversation meanwhile)."""
    await page.goto(origin + "/widget.css")
    keys = await page.evaluate(
        "() => Object.keys(sessionStorage).filter(k => k.startsWith('care-intake'))"
    )
    return list(keys)


async def assert_partner_page_shows_no_conversation(
    page: Any, chat_origin: str, site: PartnerSite
) -> None:
    """After leaving: nothing is kept in the chat's own origin, and back on the partner's
    page the chat starts afresh, with nothing typed shown or left in its text box."""
    assert await chat_storage(page, chat_origin) == []
    await page.goto(site.origin + "/")
    again = Chat(page)
    await again.wait_step("welcome")
    assert await again.user_texts() == []
    assert await again.textarea.is_hidden() or await again.textarea.input_value() == ""


def exit_to_weather(site: PartnerSite) -> dict[str, str]:
    """App settings: Exit leaves for the partner's neutral weather page."""
    return {"exit_url": site.origin + "/weather"}


async def reach_a_typed_answer(chat: Chat) -> None:
    await chat.begin("poor", "care_home")
    await chat.answer("Castle View Care Home, Lancaster")
    if await chat.step() == "provider":
        await chat.choose("none")
    await chat.wait_step("relationship")
    await chat.choose("self")
    await chat.wait_step("when")
    await chat.textarea.fill(DRAFT)
    stored = await chat.evaluate(
        "() => Object.keys(sessionStorage).filter(k => k.startsWith('care-intake')).sort()"
    )
    assert len(stored) == 2, f"the token and the draft are kept before the exit: {stored}"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "360px"])
async def test_the_exit_button_leaves_at_once_and_forgets(
    open_chat: OpenChat, site: PartnerSite, viewport: dict[str, int]
) -> None:
    server, page, chat = await open_chat(viewport=viewport, app_settings=exit_to_weather(site))
    await reach_a_typed_answer(chat)

    exit_button = chat.inside.locator('.ciw-exit[data-action="exit"]')
    assert await exit_button.is_visible()
    assert (await exit_button.text_content() or "").strip() == "Exit this page"
    hint = chat.inside.locator(".ciw-exit-hint")
    assert "does not delete your browser history" in (await hint.text_content() or "")
    assert await exit_button.get_attribute("aria-describedby") == await hint.get_attribute("id")
    await save_screenshot(page, f"widget-exit-{viewport['width']}px")

    await exit_button.click()
    await page.wait_for_url(site.origin + "/weather")
    assert await page.title() == "Weather"
    page.watch.assert_clean()

    # Back does not bring the chat back: the chat page was replaced, not left behind.
    await page.go_back()
    assert not page.url.startswith(server.base_url), page.url
    assert await chat_storage(page, server.base_url) == []


async def test_shift_three_times_leaves_from_an_embedding_page(
    open_chat: OpenChat, site: PartnerSite
) -> None:
    server, page, chat = await open_chat(
        viewport=NARROW, embedded_on=site, app_settings=exit_to_weather(site)
    )
    await reach_a_typed_answer(chat)
    await save_screenshot(page, "widget-exit-320px")

    # Another key between the presses starts the count again (typing capitals is not an exit).
    await chat.textarea.focus()
    await page.keyboard.press("Shift")
    await page.keyboard.press("Shift")
    await page.keyboard.press("a")
    await page.keyboard.press("Shift")
    await page.keyboard.press("Shift")
    assert page.url == site.origin + "/"
    assert await chat.root.get_attribute("data-exited") is None
    await page.keyboard.press("Shift")
    await page.wait_for_url(site.origin + "/weather")
    page.watch.assert_clean()

    # Nothing is left in the chat's own origin: the partner's page shows no conversation.
    await assert_partner_page_shows_no_conversation(page, server.base_url, site)


async def test_shift_three_times_on_the_page_around_the_open_chat_leaves_too(
    open_chat: OpenChat, site: PartnerSite
) -> None:
    server, page, chat = await open_chat(
        viewport=DESKTOP, embedded_on=site, app_settings=exit_to_weather(site)
    )
    await reach_a_typed_answer(chat)

    await page.locator("h1").click()  # the focus is on the partner's page, not in the chat
    assert await page.evaluate("() => document.activeElement.tagName") != "IFRAME"
    for _ in range(3):
        await page.keyboard.press("Shift")
    await page.wait_for_url(site.origin + "/weather")
    page.watch.assert_clean()
    assert await chat_storage(page, server.base_url) == []


async def test_the_chat_opened_on_its_own_leaves_by_itself(
    start_widget_server: Any, site: PartnerSite, new_page: Any
) -> None:
    """chat.html without a loader around it (a link to the chat itself) moves its own page."""
    server = await start_widget_server(**exit_to_weather(site))
    page = await new_page(viewport=PHONE)
    await page.goto(server.base_url + "/chat.html")
    await page.wait_for_selector('.ciw-root[data-step="welcome"] .ciw-panel[aria-busy="false"]')
    stored = await page.evaluate(
        "() => Object.keys(sessionStorage).filter(k => k.startsWith('care-intake'))"
    )
    assert len(stored) == 1, "the token is kept before the exit"
    await page.locator(".ciw-exit").click()
    await page.wait_for_url(site.origin + "/weather")
    page.watch.assert_clean()
    assert await chat_storage(page, server.base_url) == []


async def test_only_the_chat_frame_can_ask_the_page_to_leave(
    open_chat: OpenChat, site: PartnerSite
) -> None:
    """The loader acts on "exit" only from the chat's frame and origin: another script on the
    page (or another frame) cannot send the visitor away."""
    _, page, chat = await open_chat(
        viewport=DESKTOP, embedded_on=site, app_settings=exit_to_weather(site)
    )
    # Messages are handled in order: once "after" arrives, the forged "exit" was handled.
    await page.evaluate(
        """() => new Promise(resolve => {
            window.addEventListener('message', e => { if (e.data === 'after') resolve(); });
            window.postMessage({type: 'care-intake-chat', event: 'exit'}, '*');
            window.postMessage('after', '*');
        })"""
    )
    assert await page.evaluate("() => document.querySelector('.ciw-embed').hidden") is False
    assert await chat.frame_element.is_visible()
    assert page.url == site.origin + "/"
    assert len(await chat.bot_texts()) >= 1
    page.watch.assert_clean()


@pytest.mark.parametrize("word", ["exit", "/exit"])
async def test_typing_the_exit_word_leaves_as_the_button_does(
    open_chat: OpenChat, site: PartnerSite, word: str
) -> None:
    """The reply to the typed exit word says `exit: true`: the widget leaves the page at once,
    shows nothing of the reply, and forgets the conversation, as its Exit button does; the
    server has closed the conversation and kept nothing."""
    server, page, chat = await open_chat(
        viewport=NARROW, embedded_on=site, app_settings=exit_to_weather(site)
    )
    await reach_a_typed_answer(chat)
    await chat.textarea.fill(word)
    await chat.textarea.press("Enter")
    await page.wait_for_url(site.origin + "/weather")
    page.watch.assert_clean()
    await assert_partner_page_shows_no_conversation(page, server.base_url, site)
