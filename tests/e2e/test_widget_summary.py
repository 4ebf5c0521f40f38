"""Check your answers in the widget: the summary as a GOV.UK summary list, a Change button per
answer that goes straight to that question with the answer in the box, long answers that wrap
inside their row at 320 px, axe-clean, on a phone and on a desktop; and after a reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import DESKTOP, Chat, OpenChat, axe_violations, save_screenshot

pytestmark = pytest.mark.browser

NARROW = {"width": 320, "height": 640}
LONG_WORD = "Aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
ACCOUNT = (
    "The night staff left my dad without water for hours, again and again. "
    f"{LONG_WORD} https://example.org/a/very/long/address/that/does/not/break/anywhere/at/all\n"
    "Nobody answered the bell. " * 6
).strip()
LABELS = [
    "Kind of experience",
    "Type of service",
    "Service",
    "How you know",
    "When",
    "Part of the service",
    "What happened",
    "Share with the service",
    "Someone at risk now",
    "Told the police or council",
    "Told the service",
    "May we contact you",
    "Suggested by an organisation",
]


def describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{v['impact']} {v['id']}: {v['help']}\n  " + "\n  ".join(v["nodes"]) for v in violations
    )


async def to_summary(chat: Chat) -> None:
    await chat.begin("poor", "care_home")
    await chat.answer("Qwxz Nowhere House, Leeds")
    if await chat.step() == "provider":  # matches offered: none of these
        await chat.choose("none")
    await chat.wait_step("relationship")
    await chat.choose("friend_family")
    await chat.wait_step("when")
    await chat.choose("skip")
    await chat.wait_step("service_part")
    await chat.answer("Ward 3")
    await chat.wait_step("what_happened")
    await chat.answer(ACCOUNT)
    await chat.wait_step("share_with_service")
    await chat.choose("yes")
    await chat.wait_step("risk")
    await chat.choose("no")
    await chat.choose("neither")
    await chat.choose("not_yet")
    await chat.choose("continue")
    await chat.wait_step("contact")
    await chat.choose("no")
    await chat.wait_step("referral")
    await chat.choose("no")
    await chat.wait_step("summary")


def current_list(chat: Chat) -> Any:
    return chat.inside.locator(".ciw-msg--summary").last


async def rows_of(chat: Chat) -> list[tuple[str, str]]:
    summary = current_list(chat)
    keys = await summary.locator("dt.ciw-summary-key").all_text_contents()
    values = await summary.locator("dd.ciw-summary-value").all_text_contents()
    return list(zip(keys, values, strict=True))


async def assert_rows_do_not_overlap(chat: Chat) -> None:
    """Every row inside the list's width, each below the one before; nothing scrolls sideways."""
    summary = current_list(chat)
    frame_box = await summary.locator("dl").bounding_box()
    assert frame_box is not None
    previous_bottom = None
    for row in await summary.locator(".ciw-summary-row").all():
        box = await row.bounding_box()
        assert box is not None
        assert box["x"] >= frame_box["x"] - 0.5
        assert box["x"] + box["width"] <= frame_box["x"] + frame_box["width"] + 0.5
        for part in await row.locator("dt, dd").all():
            inner = await part.bounding_box()
            assert inner is not None
            assert (
                inner["y"] >= box["y"] - 0.5
                and inner["y"] + inner["height"] <= box["y"] + box["height"] + 0.5
            )
            assert inner["x"] + inner["width"] <= box["x"] + box["width"] + 0.5
        if previous_bottom is not None:
            assert box["y"] >= previous_bottom - 0.5
        previous_bottom = box["y"] + box["height"]
    overflow = await chat.evaluate(
        "() => [...document.querySelectorAll('.ciw-body, .ciw-summary, .ciw-summary-value')]"
        ".map(e => e.scrollWidth - e.clientWidth)"
    )
    assert max(overflow) <= 1, overflow


@pytest.mark.parametrize("viewport", [NARROW, DESKTOP], ids=["320px", "desktop"])
async def test_check_your_answers_and_change_one(
    open_chat: OpenChat, axe_script: Path, viewport: dict[str, int]
) -> None:
    _, page, chat = await open_chat(viewport=viewport, bypass_csp=True)
    await to_summary(chat)

    # A summary list: one row per answer on the path, a choice by its label, skipped plainly.
    rows = await rows_of(chat)
    assert [key for key, _ in rows] == LABELS
    assert dict(rows)["When"] == "Not given"
    assert dict(rows)["Type of service"] == "Care home"
    assert dict(rows)["What happened"] == ACCOUNT
    assert await current_list(chat).locator("dl > div > dt + dd").count() == len(LABELS)
    # The text fallback is not shown as well: the list replaces it.
    assert not any("1. Kind of experience" in t for t in await chat.bot_texts())
    # A Change button per row, named for its answer.
    change = chat.inside.get_by_role("button", name="Change What happened", exact=True)
    assert await change.count() == 1
    for label in LABELS:
        assert (
            await chat.inside.get_by_role("button", name=f"Change {label}", exact=True).count() == 1
        )
    await assert_rows_do_not_overlap(chat)
    found = await axe_violations(page, axe_script)
    assert not found, f"at the summary ({viewport}):\n{describe(found)}"
    await save_screenshot(page, f"widget-summary-{viewport['width']}")
    await (
        current_list(chat)
        .locator('.ciw-summary-row[data-step="what_happened"]')
        .scroll_into_view_if_needed()
    )
    await save_screenshot(page, f"widget-summary-{viewport['width']}-long-answer")

    # Change goes straight to that question, the answer in the box, the focus there.
    before = await chat.turn()
    await change.click()
    await chat.wait_turn_after(before)
    await chat.wait_step("what_happened")
    assert await chat.textarea.input_value() == ACCOUNT
    assert await chat.has_focus("el.classList.contains('ciw-input')")
    assert "What happened" in await chat.user_texts()
    assert not any("Your answer now" in t for t in await chat.bot_texts())  # in the box instead
    found = await axe_violations(page, axe_script)
    assert not found, f"changing an answer ({viewport}):\n{describe(found)}"

    # Fixed, not retyped: back at the summary with the new answer and the rest kept.
    await chat.textarea.press("End")
    await page.keyboard.type(" They said sorry.")
    before = await chat.turn()
    await chat.textarea.press("Enter")
    await chat.wait_turn_after(before)
    await chat.wait_step("summary")
    rows = await rows_of(chat)
    assert dict(rows)["What happened"] == ACCOUNT + " They said sorry."
    assert dict(rows)["Part of the service"] == "Ward 3"
    # Only the newest list has Change buttons; the earlier one is history.
    assert await chat.inside.locator(".ciw-msg--summary").count() == 2
    assert await chat.inside.locator(".ciw-summary-change").count() == len(LABELS)
    assert await current_list(chat).locator(".ciw-summary-change").count() == len(LABELS)
    await assert_rows_do_not_overlap(chat)
    page.watch.assert_clean()


async def test_after_a_reload_the_list_and_the_box_come_back(open_chat: OpenChat) -> None:
    _, page, chat = await open_chat(viewport=NARROW)
    await to_summary(chat)

    await page.reload()
    await chat.wait_turn_after(0)
    await chat.wait_step("summary")
    assert [key for key, _ in await rows_of(chat)] == LABELS
    assert await chat.inside.locator(".ciw-summary-change").count() == len(LABELS)

    before = await chat.turn()
    await chat.inside.get_by_role("button", name="Change Part of the service", exact=True).click()
    await chat.wait_turn_after(before)
    await chat.wait_step("service_part")
    assert await chat.textarea.input_value() == "Ward 3"
    await page.reload()
    await chat.wait_turn_after(0)
    await chat.wait_step("service_part")
    assert await chat.textarea.input_value() == "Ward 3", "still in the box after a reload"
    # The summary in the transcript is history now: no Change buttons left in it.
    assert await chat.inside.locator(".ciw-summary-change").count() == 0
    await chat.answer("Ward 4")
    await chat.wait_step("summary")
    assert dict(await rows_of(chat))["Part of the service"] == "Ward 4"
    page.watch.assert_clean()


async def test_in_arabic_the_list_reads_right_to_left_with_arabic_change_buttons(
    open_chat: OpenChat, axe_script: Path
) -> None:
    _, page, chat = await open_chat(viewport=NARROW, bypass_csp=True)
    await chat.choose("language")
    await chat.wait_step("language")
    await chat.choose("ar")
    await chat.wait_step("welcome")
    await chat.inside.locator('.ciw-root[data-ui-locale="ar"]').wait_for(state="attached")
    await to_summary(chat)

    rows = dict(await rows_of(chat))
    assert rows["متى"] == "لم تُقدَّم إجابة"  # "When": "Not given"
    assert rows["ماذا حدث"] == ACCOUNT  # the person's own words, as typed
    assert await chat.inside.locator('.ciw-panel[dir="rtl"]').count() == 1
    for label in rows:
        button = chat.inside.get_by_role("button", name=f"تغيير {label}", exact=True)
        assert await button.count() == 1, label
    await assert_rows_do_not_overlap(chat)
    found = await axe_violations(page, axe_script)
    assert not found, f"at the Arabic summary:\n{describe(found)}"
    await save_screenshot(page, "widget-summary-320-ar")

    before = await chat.turn()
    await chat.inside.get_by_role("button", name="تغيير ماذا حدث", exact=True).click()
    await chat.wait_turn_after(before)
    await chat.wait_step("what_happened")
    assert await chat.textarea.input_value() == ACCOUNT
    page.watch.assert_clean()
