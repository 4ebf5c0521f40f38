"""The terminal channel (`intake chat`): numbered choices, typed numbers and command words,
the end of input, over a real service on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.app import build_service
from bot.channels.terminal import converse
from bot.config import Settings
from bot.intake.service import IntakeService


@pytest.fixture
async def service(server_settings: Settings) -> AsyncIterator[IntakeService]:
    svc = await build_service(server_settings)
    yield svc
    await svc.storage.close()


def typed(*lines: str):  # type: ignore[no-untyped-def]
    """A person typing `lines`, then Ctrl-D."""
    pending = list(lines)

    def read_line(prompt: str) -> str:
        if not pending:
            raise EOFError
        return pending.pop(0)

    return read_line


async def test_numbered_choices_and_a_typed_command_word(service: IntakeService) -> None:
    shown: list[str] = []
    status = await converse(service, read_line=typed("1", "cancel"), write=shown.append)
    screen = "\n".join(shown)
    assert status == 0
    assert "Ctrl-D quits" in screen
    assert "  1. " in screen and "  2. " in screen  # choices are numbered
    assert "Poor" in screen  # "1" started the report: the experience question was asked
    # The typed word "cancel" ended the conversation (it did not become an answer).
    assert shown[-1].startswith("You have cancelled. We have not kept anything")


async def test_the_end_of_input_ends_the_chat_quietly(service: IntakeService) -> None:
    shown: list[str] = []
    assert await converse(service, read_line=typed(), write=shown.append) == 0
    assert shown[-1] == ""


async def test_links_are_shown_as_label_and_address_lines(service: IntakeService) -> None:
    from bot.config import DEFAULT_LINKS

    shown: list[str] = []
    # Start, Poor, "The care was in Wales, Scotland or Northern Ireland" (13), End here.
    script = typed("1", "1", "13", "1")
    await converse(service, read_line=script, write=shown.append)
    screen = "\n".join(shown)
    assert f"Other ways to contact us: {DEFAULT_LINKS['contact_us']}" in screen
    assert f"Care Inspectorate Wales: {DEFAULT_LINKS['wales_care']}" in screen
    assert f"RQIA (Northern Ireland): {DEFAULT_LINKS['northern_ireland']}" in screen
    assert "Goodbye" in screen  # "End here" (1): nothing kept


async def test_the_summary_is_numbered_and_change_n_quotes_the_answer(
    service: IntakeService,
) -> None:
    shown: list[str] = []
    lines = typed(
        "1",  # start
        "Poor",
        "Care home",
        "Qwxz Nowhere House",
        "2",  # a friend's or relative's care
        "Skip",  # when
        "Ward 3",
        "They <b>left</b> him alone.",
        "2",  # do not share it with the service
        "No",
        "Neither",
        "Not yet",
        "Continue",
        "No",  # no contact
        "Yes",  # an organisation pointed them here
        "Skip",  # which one: rather not say
        "change 7",
        "They left him alone all night.",
        "Send my report",
    )
    assert await converse(service, read_line=lines, write=shown.append) == 0
    summary = next(s for s in shown if "Here are your answers" in s)
    assert "1. Kind of experience: Poor\n" in summary
    assert "5. When: Not given\n" in summary
    assert "7. What happened: They <b>left</b> him alone.\n" in summary
    assert "8. Share with the service: No\n" in summary
    assert "Suggested by an organisation: Yes\n" in summary
    assert "Which organisation: Not given\n" in summary
    assert "type change and its number" in summary
    asked = "\n".join(shown[: shown.index(summary)])
    assert "Can we share your feedback with the service?\n  1. Yes\n  2. No" in asked
    changing = shown[shown.index(summary) + 1]
    assert "Please tell us what happened" in changing
    assert "Your answer now: They <b>left</b> him alone." in changing  # to copy and fix
    again = [s for s in shown if "Here are your answers" in s][-1]
    assert "7. What happened: They left him alone all night.\n" in again
    # The reference, then the survey offer (input ended there: Ctrl-D).
    assert "Reference: " in shown[-2] and "  y. Yes, answer the questions" in shown[-2]


_TO_SUBMIT = (
    "1",
    "Good",
    "Dentist",
    "Qwxz Nowhere House",
    "1",  # their own care
    "Skip",
    "Skip",
    "Kind and quick.",
    "Yes",  # may share with the service
    "No",  # no contact
    "No",  # no organisation pointed them here: the summary
    "Send my report",
)


async def test_the_survey_is_offered_with_y_or_n_and_runs_here(service: IntakeService) -> None:
    shown: list[str] = []
    lines = typed(*_TO_SUBMIT, "y", "2", "3", "Skip")
    assert await converse(service, read_line=lines, write=shown.append) == 0
    offered = next(s for s in shown if "Reference: " in s)
    assert "Would you answer 3 short questions" in offered and "  n. No, thank you" in offered
    first = shown[shown.index(offered) + 1]
    assert first.startswith("Question 1 of 3\nHow easy was it to use this chat?")
    assert "Question 3 of 3" in shown[-2]
    assert shown[-1].startswith("Thank you. We have saved your answers.")
    (stored,) = await service.survey_answers()
    assert stored.channel == "terminal"
    assert stored.answers == {
        "survey_ease": "easy",
        "survey_said_all": "no",
        "survey_improve": None,
    }


async def test_n_declines_the_survey(service: IntakeService) -> None:
    shown: list[str] = []
    assert await converse(service, read_line=typed(*_TO_SUBMIT, "n"), write=shown.append) == 0
    assert shown[-1].startswith("All right. Thank you for using this chat.")
    assert await service.survey_answers() == []


@pytest.mark.parametrize("word", ["exit", "/exit"])
async def test_exit_clears_the_screen_and_scrollback_and_ends(
    service: IntakeService, word: str
) -> None:
    from bot.channels.terminal import CLEAR_SCREEN_AND_SCROLLBACK

    shown: list[str] = []
    status = await converse(service, read_line=typed("1", word, "never read"), write=shown.append)
    assert status == 0
    assert CLEAR_SCREEN_AND_SCROLLBACK == "\x1b[H\x1b[2J\x1b[3J"
    # The clear is the last thing written: nothing of the chat (or its end) comes after it.
    assert shown[-1] == CLEAR_SCREEN_AND_SCROLLBACK


async def test_help_says_what_exit_clears_in_a_terminal(service: IntakeService) -> None:
    shown: list[str] = []
    await converse(service, read_line=typed("help"), write=shown.append)
    screen = "\n".join(shown)
    assert "To leave at once, type exit." in screen
    assert "clear this window and its scrollback" in screen
    assert "shell's history" in screen
