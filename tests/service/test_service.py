"""The service over real SQLite storage: durability, idempotency, erasure, channels by key."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from bot.engine.types import Inbound
from bot.intake.rendering import Reply
from bot.intake.service import IntakeService, InvalidToken

REFERENCE = re.compile(r"^[A-HJKMNP-Z2-9]{4}-[A-HJKMNP-Z2-9]{4}$")

GOOD_PATH = [
    ("choice", "start"),
    ("choice", "good"),
    ("choice", "dentist"),
    ("text", "Qwxz Zzyq Nonexistent"),
    ("choice", "self"),
    ("text", "Gentle and quick."),
    ("choice", "yes"),  # may share with the service
    ("choice", "no"),  # no contact
    ("choice", "no"),  # no organisation pointed them here
]


async def drive(
    service: IntakeService, conversation_id: str, steps: list[tuple[str, str]]
) -> Reply:
    reply = None
    for number, (kind, value) in enumerate(steps):
        reply = await service.handle(conversation_id, Inbound(kind, value), message_id=f"m{number}")  # type: ignore[arg-type]
    assert reply is not None
    return reply


async def test_a_submitted_report_is_stored_with_a_readable_reference(
    service: IntakeService,
) -> None:
    start = await service.start(channel="web", with_token=True)
    assert start.token and start.step == "welcome"
    reply = await drive(service, start.conversation_id, GOOD_PATH)
    assert reply.step == "summary"
    done = await service.handle(
        start.conversation_id, Inbound("choice", "submit"), message_id="final"
    )
    assert done.done and done.step == "submitted"
    assert done.reference and REFERENCE.match(done.reference)
    assert done.reference in done.messages[0].text
    async with service.storage.unit_of_work() as uow:
        stored = await uow.reports.get(done.reference)
        outbox = await uow.outbox.claim("report.submitted", limit=10, lease_seconds=5)
    assert stored is not None
    assert stored.data["what_happened"] == "Gentle and quick."
    assert stored.data["channel"] == "web" and stored.priority == "routine"
    assert [m.payload["reference"] for m in outbox] == [done.reference]


async def test_a_repeated_message_id_is_applied_once(service: IntakeService) -> None:
    start = await service.start(channel="web", with_token=True)
    first = await service.handle(
        start.conversation_id, Inbound("choice", "start"), message_id="same"
    )
    again = await service.handle(
        start.conversation_id, Inbound("choice", "start"), message_id="same"
    )
    assert again.to_record() == first.to_record() and again.replayed
    # A different answer under the same id changes nothing either.
    other = await service.handle(
        start.conversation_id, Inbound("choice", "poor"), message_id="same"
    )
    assert other.step == "experience"
    view = await service.view(start.conversation_id)
    assert [e["role"] for e in view.transcript or []].count("user") == 1


async def test_cancel_erases_answers_and_transcript(service: IntakeService) -> None:
    start = await service.start(channel="web", with_token=True)
    await drive(service, start.conversation_id, GOOD_PATH[:5])
    cancelled = await service.handle(start.conversation_id, Inbound("command", "cancel"))
    assert cancelled.done and cancelled.reference is None
    view = await service.view(start.conversation_id)
    assert view.transcript == []
    async with service.storage.unit_of_work() as uow:
        record = await uow.conversations.get(start.conversation_id)
        assert await uow.reports.count() == 0
    assert record is not None and record.state.answers == {} and record.state.status == "cancelled"


async def test_a_submitted_conversation_cannot_be_reopened(service: IntakeService) -> None:
    start = await service.start(channel="web", with_token=True)
    await drive(service, start.conversation_id, GOOD_PATH)
    done = await service.handle(start.conversation_id, Inbound("choice", "submit"))
    for inbound in (
        Inbound("command", "back"),
        Inbound("command", "restart"),
        Inbound("text", "more"),
    ):
        after = await service.handle(start.conversation_id, inbound)
        assert after.done and after.step == "submitted" and after.reference == done.reference
    async with service.storage.unit_of_work() as uow:
        assert await uow.reports.count() == 1


async def test_tokens_are_checked_by_hash_inside_the_turn(service: IntakeService) -> None:
    start = await service.start(channel="web", with_token=True)
    assert start.token is not None
    with pytest.raises(InvalidToken):
        await service.handle(
            start.conversation_id, Inbound("choice", "start"), token=start.token + "x"
        )
    with pytest.raises(InvalidToken):
        await service.view(start.conversation_id, token="")
    assert (await service.view(start.conversation_id, token=start.token)).step == "welcome"
    moved = await service.handle(
        start.conversation_id, Inbound("choice", "start"), token=start.token
    )
    assert moved.step == "experience"
    async with service.storage.unit_of_work() as uow:
        record = await uow.conversations.get(start.conversation_id)
    assert record is not None and start.token not in (record.token_hash or "")


async def test_the_directory_is_searched_at_the_provider_step(service: IntakeService) -> None:
    start = await service.start(channel="web", with_token=True)
    reply = await drive(
        service, start.conversation_id, [*GOOD_PATH[:3], ("text", "bright smile dental lancaster")]
    )
    assert reply.step == "provider"
    assert reply.messages[-1].choices[0].id == "1-900000002"
    assert reply.messages[-1].choices[-1].id == "none"


async def test_a_channel_key_finds_or_opens_its_conversation(service: IntakeService) -> None:
    def send(update_id: int, inbound: Inbound) -> object:
        return service.handle_for_channel_key(
            "telegram",
            "4242",
            inbound,
            message_id=str(update_id),
            scope="telegram:test",
            locale_hints=("pl-PL",),
            outbox_topic="telegram.send",
        )

    first = await send(1, Inbound("start", "1-900000003"))
    assert first.step == "welcome"  # type: ignore[attr-defined]
    second = await send(2, Inbound("choice", "start"))
    assert second.conversation_id == first.conversation_id  # type: ignore[attr-defined]
    replay = await send(2, Inbound("choice", "start"))
    assert replay.replayed  # type: ignore[attr-defined]
    async with service.storage.unit_of_work() as uow:
        sent = await uow.outbox.claim("telegram.send", limit=100, lease_seconds=5)
    assert {m.ordering_key for m in sent} == {"4242"}


async def test_a_deep_link_offers_the_named_service(service: IntakeService) -> None:
    start = await service.start(channel="web", with_token=True, start_param="1-900000003")
    reply = await drive(
        service,
        start.conversation_id,
        [("choice", "start"), ("choice", "good"), ("choice", "care_home")],
    )
    assert reply.step == "provider"
    assert [c.id for c in reply.messages[-1].choices] == ["1-900000003", "none"]
    chosen = await service.handle(start.conversation_id, Inbound("choice", "1-900000003"))
    assert chosen.step == "relationship"


async def test_invisible_control_characters_never_reach_the_transcript(
    service: IntakeService,
) -> None:
    start = await service.start(channel="web", with_token=True)
    await drive(service, start.conversation_id, GOOD_PATH[:5])
    await service.handle(start.conversation_id, Inbound("text", "Kind\u0000 staff\u202e here"))
    view = await service.view(start.conversation_id)
    typed = [e for e in view.transcript or [] if e["role"] == "user"][-1]
    assert typed["value"] == "Kind staff here" and typed["text"] == "Kind staff here"


async def test_idle_conversations_are_ended_and_erased_but_reports_kept(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    from bot.app import build_service
    from bot.config import Settings

    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    service = await build_service(
        Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/idle.sqlite3")
    )
    service._clock = lambda: now[0]
    try:
        abandoned = await service.start(channel="web", with_token=True)
        await drive(service, abandoned.conversation_id, GOOD_PATH[:6])
        sent = await service.start(channel="web", with_token=True)
        await drive(service, sent.conversation_id, GOOD_PATH)
        done = await service.handle(sent.conversation_id, Inbound("choice", "submit"))
        now[0] += timedelta(days=6)
        recent = await service.start(channel="web", with_token=True)
        now[0] += timedelta(days=25)  # the first two are 31 days idle, the third 25

        assert await service.purge_idle(timedelta(days=30)) == 1
        view = await service.view(abandoned.conversation_id)
        assert view.done and view.transcript == [] and view.step == "ended"
        assert not (await service.view(recent.conversation_id)).done
        async with service.storage.unit_of_work() as uow:
            record = await uow.conversations.get(abandoned.conversation_id)
            assert record is not None and record.state.answers == {}
            assert await uow.reports.get(done.reference or "") is not None
        assert await service.purge_idle(timedelta(days=30)) == 0
    finally:
        await service.storage.close()


async def test_a_message_sent_twice_at_once_is_applied_once(any_service: IntakeService) -> None:
    """Two requests with one message id at the same moment (two workers, or a client retry
    racing its original): one applies it, the other answers with the same reply. On
    PostgreSQL the second waits for the lock, its write is refused as a duplicate and its
    turn, run again, replays."""
    service = any_service
    start = await service.start(channel="web", with_token=True)
    replies = await asyncio.gather(
        *(
            service.handle(start.conversation_id, Inbound("choice", "start"), message_id="m1")
            for _ in range(3)
        )
    )
    assert len({json.dumps(r.to_record(), sort_keys=True) for r in replies}) == 1
    assert sorted(r.replayed for r in replies) == [False, True, True]
    view = await service.view(start.conversation_id)
    roles = [e["role"] for e in view.transcript or []]
    assert roles.count("user") == 1
    async with service.storage.unit_of_work() as uow:
        record = await uow.conversations.get(start.conversation_id)
    assert record is not None and record.revision == 1
    assert record.transcript_seq == len(roles) + 1


async def test_an_update_sent_twice_at_once_is_applied_once(any_service: IntakeService) -> None:
    service = any_service

    def send(update_id: int, inbound: Inbound) -> Any:
        return service.handle_for_channel_key(
            "telegram",
            "77",
            inbound,
            message_id=str(update_id),
            scope="telegram:test",
            outbox_topic="telegram.send",
        )

    first = await send(1, Inbound("start", ""))
    replies = await asyncio.gather(*(send(2, Inbound("choice", "start")) for _ in range(3)))
    assert {r.conversation_id for r in replies} == {first.conversation_id}
    assert sorted(r.replayed for r in replies) == [False, True, True]
    assert {r.step for r in replies} == {"experience"}
    view = await service.view(first.conversation_id)
    assert [e["role"] for e in view.transcript or []].count("user") == 1


async def test_the_transcript_continues_in_order_across_turns(any_service: IntakeService) -> None:
    service = any_service
    start = await service.start(channel="web", with_token=True)
    await drive(service, start.conversation_id, GOOD_PATH[:4])
    view = await service.view(start.conversation_id)
    transcript = view.transcript or []
    assert transcript[0]["role"] == "bot" and transcript[-1]["role"] == "bot"
    assert [e["value"] for e in transcript if e["role"] == "user"] == [
        value for _, value in GOOD_PATH[:4]
    ]
    async with service.storage.unit_of_work() as uow:
        entries = await uow.transcripts.list(start.conversation_id)
        record = await uow.conversations.get(start.conversation_id)
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert record is not None and record.transcript_seq == len(entries) + 1


async def test_the_current_question_of_a_channel_address(service: IntakeService) -> None:
    assert await service.view_for_channel_key("telegram", "777") is None
    await service.handle_for_channel_key(
        "telegram", "777", Inbound("start"), message_id="1", scope="telegram:test"
    )
    await service.handle_for_channel_key(
        "telegram", "777", Inbound("choice", "start"), message_id="2", scope="telegram:test"
    )
    current = await service.view_for_channel_key("telegram", "777")
    assert current is not None and current.step == "experience" and not current.done
    assert [c.id for c in current.messages[-1].choices] == ["poor", "good", "mixed"]
    await service.handle_for_channel_key(
        "telegram", "777", Inbound("command", "cancel"), message_id="3", scope="telegram:test"
    )
    assert await service.view_for_channel_key("telegram", "777") is None


async def test_a_finished_conversation_is_erased_and_its_token_expires(
    any_service: IntakeService,
) -> None:
    from datetime import UTC, datetime, timedelta

    from bot.intake.service import ENDED_RETENTION

    service = any_service
    now = [datetime.now(UTC)]
    service._clock = lambda: now[0]
    sent = await service.start(channel="web", with_token=True)
    await drive(service, sent.conversation_id, GOOD_PATH)
    done = await service.handle(
        sent.conversation_id, Inbound("choice", "submit"), message_id="last", token=sent.token
    )
    assert done.reference
    talking = await service.start(channel="web", with_token=True)
    await drive(service, talking.conversation_id, GOOD_PATH[:3])

    # Shortly after: the confirmation can be read again after a reload.
    view = await service.view(sent.conversation_id, token=sent.token)
    assert view.reference == done.reference and view.transcript
    assert await service.erase_finished() == 0

    now[0] += ENDED_RETENTION + timedelta(minutes=1)
    with pytest.raises(InvalidToken):
        await service.view(sent.conversation_id, token=sent.token)
    with pytest.raises(InvalidToken):
        await service.handle(sent.conversation_id, Inbound("command", "back"), token=sent.token)
    assert await service.erase_finished() == 1
    async with service.storage.unit_of_work() as uow:
        record = await uow.conversations.get(sent.conversation_id)
        assert record is not None and record.state.answers == {} and record.state.history == []
        assert await uow.transcripts.list(sent.conversation_id) == []
        _, kept = await uow.conversations.get_for_turn(
            sent.conversation_id, scope=sent.conversation_id, message_id="last"
        )
        assert kept is None
        report = await uow.reports.get(done.reference)
        assert report is not None and report.data["experience"] == "good"
        assert await uow.transcripts.list(talking.conversation_id)  # still talking: untouched
    assert await service.erase_finished() == 0
    # The person still talking keeps their token, however long ago they began.
    assert (await service.view(talking.conversation_id, token=talking.token)).transcript
