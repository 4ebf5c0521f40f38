"""The survey about the chat, through the service on every backend: offered once after a
report is sent, run as its own conversation, stored apart and anonymous, and nothing of it
kept when it is cancelled."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from bot.engine.types import Inbound
from bot.intake.rendering import TAPPED_MESSAGE_ID, Reply
from bot.intake.service import IntakeService, SurveyNotOffered
from tests.service.test_service import GOOD_PATH, drive

SURVEY_PATH = [("choice", "difficult"), ("choice", "partly"), ("text", "Fewer questions")]


async def _submitted(service: IntakeService, channel: str = "web") -> Reply:
    start = await service.start(channel=channel, with_token=True)  # type: ignore[arg-type]
    await drive(service, start.conversation_id, GOOD_PATH)
    done = await service.handle(start.conversation_id, Inbound("choice", "submit"))
    assert done.done and done.reference
    done.token = start.token
    return done


def _answers(step: str, choice: str) -> float:
    value = REGISTRY.get_sample_value(
        "intake_survey_answers_total", {"step": step, "choice": choice}
    )
    return value or 0.0


async def test_offered_once_answered_and_stored_apart(any_service: IntakeService) -> None:
    service = any_service
    done = await _submitted(service)
    offer = done.survey_offer
    assert offer is not None and offer.conversation_id == done.conversation_id
    assert "3 short questions" in offer.text
    # A reloaded page sees the offer too.
    assert (await service.view(done.conversation_id)).survey_offer == offer
    before = _answers("survey_ease", "difficult"), _answers("survey_improve", "answered")

    started = await service.start_survey(done.conversation_id, token=done.token, with_token=True)
    assert started.token and started.conversation_id != done.conversation_id
    assert started.step == "survey_ease" and not started.done
    assert started.messages[-1].text.startswith("Question 1 of 3\n")
    # Taken: no longer offered, and cannot be taken twice.
    assert (await service.view(done.conversation_id)).survey_offer is None
    with pytest.raises(SurveyNotOffered):
        await service.start_survey(done.conversation_id, token=done.token)

    finished = await drive(service, started.conversation_id, SURVEY_PATH)
    assert finished.done and finished.step == "survey_thanks" and finished.reference is None
    assert "saved your answers" in finished.messages[-1].text

    async with service.storage.unit_of_work() as uow:
        (stored,) = await uow.surveys.list()
        report = await uow.reports.get(done.reference or "")
        transcript = await uow.transcripts.list(started.conversation_id)
        record = await uow.conversations.get(started.conversation_id)
    assert stored.day == datetime.now(UTC).date() and stored.channel == "web"
    assert stored.locale == "en"
    assert stored.answers == {
        "survey_ease": "difficult",
        "survey_said_all": "partly",
        "survey_improve": "Fewer questions",
    }
    # Anonymous: nothing in the stored survey names the report, a conversation or a person,
    # and the report holds nothing of the survey.
    assert done.reference not in repr(stored) and done.conversation_id not in repr(stored)
    assert started.conversation_id not in repr(stored)
    assert report is not None and "Fewer questions" not in repr(report.data)
    assert "survey" not in repr(report.data)
    # What was typed in the survey is not kept beside the stored answers.
    assert transcript == []
    assert record is not None and record.state.answers == {}
    assert _answers("survey_ease", "difficult") == before[0] + 1
    assert _answers("survey_improve", "answered") == before[1] + 1


async def test_cancelling_the_survey_keeps_nothing(any_service: IntakeService) -> None:
    service = any_service
    done = await _submitted(service)
    started = await service.start_survey(done.conversation_id, token=done.token)
    await drive(service, started.conversation_id, SURVEY_PATH[:2])
    cancelled = await service.handle(started.conversation_id, Inbound("command", "cancel"))
    assert cancelled.done and "stopped the survey" in cancelled.messages[0].text
    async with service.storage.unit_of_work() as uow:
        assert await uow.surveys.list() == []
        assert await uow.transcripts.list(started.conversation_id) == []
        record = await uow.conversations.get(started.conversation_id)
    assert record is not None and record.state.answers == {}


async def test_declined_offer_cannot_be_taken(memory_service: IntakeService) -> None:
    service = memory_service
    done = await _submitted(service)
    declined = await service.handle(done.conversation_id, Inbound("choice", "survey_decline"))
    assert declined.done and declined.survey_offer is None
    assert declined.messages[0].text == "All right. Thank you for using this chat."
    assert (await service.view(done.conversation_id)).survey_offer is None
    with pytest.raises(SurveyNotOffered):
        await service.start_survey(done.conversation_id, token=done.token)
    # Declining again is just a message to a sent report.
    again = await service.handle(done.conversation_id, Inbound("choice", "survey_decline"))
    assert again.reference == done.reference and again.survey_offer is None


async def test_only_this_clients_sent_report_offers_a_survey(
    memory_service: IntakeService,
) -> None:
    service = memory_service
    done = await _submitted(service)
    with pytest.raises(SurveyNotOffered):
        await service.start_survey(done.conversation_id, token="not-the-token-of-it-at-all")
    active = await service.start(channel="web", with_token=True)
    assert active.survey_offer is None
    with pytest.raises(SurveyNotOffered):
        await service.start_survey(active.conversation_id, token=active.token)
    with pytest.raises(SurveyNotOffered):
        await service.start_survey("00000000-0000-4000-8000-000000000000")


async def test_a_chat_by_key_takes_the_offer_from_its_buttons(
    memory_service: IntakeService,
) -> None:
    """Telegram: the offer goes out as a last message with two buttons naming the sent
    conversation; a press in the same chat opens the survey there, in another chat it does
    nothing but say the conversation has ended."""
    service = memory_service

    async def say(chat: str, kind: str, value: str, n: list[int] = [0]) -> Reply:  # noqa: B006
        n[0] += 1
        return await service.handle_for_channel_key(
            "telegram",
            chat,
            Inbound(kind, value),  # type: ignore[arg-type]
            message_id=str(n[0]),
            scope="bot",
            outbox_topic="telegram.send",
        )

    await say("42", "start", "")
    for kind, value in [*GOOD_PATH, ("choice", "submit")]:
        done = await say("42", kind, value)
    assert done.done and done.survey_offer is not None
    async with service.storage.unit_of_work() as uow:
        newest = (await uow.outbox.list(topic="telegram.send", limit=1))[0]
    last = newest.payload["messages"][-1]
    start_id = f"survey_start:{done.conversation_id}"
    assert [c["id"] for c in last["choices"]] == [
        start_id,
        f"survey_decline:{done.conversation_id}",
    ]

    elsewhere = await say("43", "choice", start_id)
    assert elsewhere.messages[0].text.startswith("This conversation has ended")
    for forged in ("survey_start:no-such-conversation", "survey_decline:", "survey_start"):
        refused = await say("44", "choice", forged)
        assert refused.messages[0].text.startswith("This conversation has ended")
    survey = await say("42", "choice", start_id)
    assert survey.step == "survey_ease" and survey.conversation_id != done.conversation_id
    finished = None
    for kind, value in SURVEY_PATH:
        finished = await say("42", kind, value)
    assert finished is not None and finished.step == "survey_thanks"
    async with service.storage.unit_of_work() as uow:
        (stored,) = await uow.surveys.list()
    assert stored.channel == "telegram"
    # The chat's next message starts a new report.
    assert (await say("42", "text", "hello")).step == "welcome"


async def test_each_reply_to_a_tap_names_the_tapped_message(any_service: IntakeService) -> None:
    """Whatever path a tap takes (a chat with no conversation, a turn, the survey offer, an
    offer that is not this chat's), its reply's outbox row names the message tapped, so the
    channel's sender takes that message's buttons away as the reply goes; a typed answer's
    row names none."""
    service = any_service
    update_ids = iter(range(1, 1000))

    async def say(chat: str, kind: str, value: str, tapped: int | None = None) -> Reply:
        reply = await service.handle_for_channel_key(
            "telegram",
            chat,
            Inbound(kind, value),  # type: ignore[arg-type]
            message_id=str(next(update_ids)),
            scope="bot",
            outbox_topic="telegram.send",
            tapped_message_id=tapped,
        )
        async with service.storage.unit_of_work() as uow:
            newest = (await uow.outbox.list(topic="telegram.send", limit=1))[0]
        assert newest.payload.get(TAPPED_MESSAGE_ID) == tapped, (kind, value)
        return reply

    opened = await say("42", "choice", "start", tapped=7)  # an old keyboard, no conversation
    assert opened.step == "welcome"
    for number, (kind, value) in enumerate([*GOOD_PATH, ("choice", "submit")], start=10):
        done = await say("42", kind, value, number if kind == "choice" else None)
    assert done.done and done.survey_offer is not None
    start_id = f"survey_start:{done.conversation_id}"
    ended = await say("43", "choice", start_id, tapped=50)
    assert ended.messages[0].text.startswith("This conversation has ended")
    survey = await say("42", "choice", start_id, tapped=51)
    assert survey.step == "survey_ease"
