"""The survey about the chat in the widget, in headless Chromium: offered under the sent
report as two buttons, run in the same panel, declined with one press."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import (
    DESKTOP,
    PHONE,
    Chat,
    OpenChat,
    axe_violations,
    save_screenshot,
)

pytestmark = pytest.mark.browser


async def _sent(open_chat: OpenChat) -> Chat:
    _, _, chat = await open_chat(viewport=DESKTOP)
    await chat.complete_report()
    await chat.inside.locator(".ciw-reference").wait_for(state="visible")
    return chat


async def test_the_survey_runs_in_the_same_panel(open_chat: OpenChat) -> None:
    chat = await _sent(open_chat)
    assert "Would you answer 3 short questions about this chat?" in (await chat.bot_texts())[-1]
    assert await chat.choice("survey_start").is_visible()
    assert await chat.choice("survey_decline").is_visible()
    # The reference comes first: focus on Copy, the offer's buttons after it.
    assert await chat.has_focus("el.classList.contains('ciw-copy')")
    sent = await chat.session()

    await chat.choose("survey_start")
    await chat.wait_step("survey_ease")
    assert (await chat.session())["conversation_id"] != sent["conversation_id"]
    assert (await chat.bot_texts())[-1].startswith("Question 1 of 3")
    assert (await chat.user_texts())[-1] == "Yes, answer the questions"
    await chat.choose("easy")
    await chat.wait_step("survey_said_all")
    await chat.choose("yes")
    await chat.wait_step("survey_improve")
    assert "personal details" in (await chat.bot_texts())[-1]
    await chat.answer("Nothing to add.")
    await chat.wait_step("survey_thanks")
    assert (await chat.bot_texts())[-1].startswith("Thank you. We have saved your answers.")
    assert await chat.root.get_attribute("data-done") == "true"
    assert await chat.inside.locator(".ciw-choice").count() == 0
    chat.page.watch.assert_clean()


async def test_declining_removes_the_offer(open_chat: OpenChat) -> None:
    chat = await _sent(open_chat)
    await chat.choose("survey_decline")
    assert (await chat.bot_texts())[-1] == "All right. Thank you for using this chat."
    assert await chat.inside.locator(".ciw-choice").count() == 0
    # The report's reference is still there to copy.
    assert await chat.inside.locator(".ciw-reference").is_visible()
    chat.page.watch.assert_clean()


@pytest.mark.parametrize(
    "viewport",
    [{"width": 320, "height": 640}, PHONE, DESKTOP],
    ids=["320px", "360px", "desktop"],
)
async def test_the_survey_is_clean_for_axe_on_every_screen(
    open_chat: OpenChat, axe_script: Path, viewport: dict[str, int]
) -> None:
    """The offer and each kind of survey step, audited as the rest of the chat is (the page's
    CSP rightly refuses injected scripts; axe is a test tool, so it is bypassed here)."""
    _, page, chat = await open_chat(viewport=viewport, bypass_csp=True)
    await chat.complete_report()
    await chat.inside.locator(".ciw-reference").wait_for(state="visible")
    width = viewport["width"]
    for step, act in (
        ("offer", lambda: chat.choose("survey_start")),
        ("survey_ease", lambda: chat.choose("easy")),
        ("survey_said_all", lambda: chat.choose("partly")),
        ("survey_improve", lambda: chat.answer("Bigger buttons.")),
    ):
        if step != "offer":
            await chat.wait_step(step)
        found = await axe_violations(page, axe_script)
        assert not found, f"at {step} ({width}px): {found}"
        await save_screenshot(page, f"widget-survey-{step}-{width}px")
        await act()
    await chat.wait_step("survey_thanks")
    assert not await axe_violations(page, axe_script)
    await save_screenshot(page, f"widget-survey-thanks-{width}px")
    page.watch.assert_clean()
