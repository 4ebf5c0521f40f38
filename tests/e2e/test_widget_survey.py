"""The survey about the chat in the widget, in headless Chromium: offered under the sent
report as two buttons, run in the same panel, declined with one press."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import DESKTOP, Chat, OpenChat

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
