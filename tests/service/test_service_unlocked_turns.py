"""Turns read without the conversation's lock (`read_for_turn`, PostgreSQL): two turns of one
conversation that race are both applied, one after the other, and a repeated message id is
still answered with the first reply.

The race is forced: both turns read the conversation before either writes (a barrier after
each turn's first read). With the lock the second read would wait for the first turn's
commit and never reach the barrier.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.engine.types import Inbound
from bot.intake.service import IntakeService
from storage.repositories import SqlConversations
from storage.sqlalchemy_storage import SqlStorage
from tests.service.test_service_paths import memory, user_lines


async def test_an_overtaken_turn_runs_again(memory_service: IntakeService) -> None:
    """Someone else saved the conversation between an unlocked read and the write: the turn is
    run again on what they left, applied once, not replayed and not an error."""
    start = await memory_service.start(channel="web", with_token=True)
    memory(memory_service).fail_next("overtaken")
    reply = await memory_service.handle(
        start.conversation_id, Inbound("choice", "start"), message_id="m1"
    )
    assert not reply.replayed and reply.step != start.step
    assert not memory(memory_service).faults.take("overtaken")  # the fault was used
    assert await user_lines(memory_service, start.conversation_id) == 1
    again = await memory_service.handle(
        start.conversation_id, Inbound("choice", "start"), message_id="m1"
    )
    assert again.replayed and again.to_record() == reply.to_record()


def _race_first_reads(monkeypatch: pytest.MonkeyPatch, racers: int) -> list[int]:
    """The first `racers` unlocked reads wait for each other before their turns go on; the
    list returned counts those that did (so a test can tell that the race happened)."""
    original = SqlConversations.read_for_turn
    barrier = asyncio.Barrier(racers)
    waited: list[int] = []

    async def racing(self: SqlConversations, conversation_id: str, **kwargs: Any) -> Any:
        found = await original(self, conversation_id, **kwargs)
        if len(waited) < racers:
            waited.append(1)
            await asyncio.wait_for(barrier.wait(), 5)
        return found

    monkeypatch.setattr(SqlConversations, "read_for_turn", racing)
    return waited


@pytest.mark.postgres
@pytest.mark.parametrize("any_service", ["postgres"], indirect=True)
async def test_two_messages_racing_on_one_conversation_are_both_applied_in_order(
    any_service: IntakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = any_service
    assert isinstance(service.storage, SqlStorage)
    service.storage.unlocked_turns = True
    start = await service.start(channel="web", with_token=True)
    conversation_id = start.conversation_id
    raced = _race_first_reads(monkeypatch, 2)
    sent = {"a": Inbound("choice", "start"), "b": Inbound("text", "hello there")}
    replies = dict(
        zip(
            sent,
            await asyncio.gather(
                *(
                    service.handle(conversation_id, inbound, message_id=key)
                    for key, inbound in sent.items()
                )
            ),
            strict=True,
        )
    )
    assert len(raced) == 2
    assert not any(reply.replayed for reply in replies.values())
    view = await service.view(conversation_id)
    said = [line["value"] for line in view.transcript or [] if line["role"] == "user"]
    assert sorted(said) == sorted(inbound.value for inbound in sent.values())
    # Applied one after the other: the later one answered from where the earlier one left
    # the conversation, and what it answered is where the conversation is now.
    last = next(key for key, inbound in sent.items() if inbound.value == said[-1])
    assert replies[last].step == view.step
    async with service.storage.unit_of_work() as uow:
        record = await uow.conversations.get(conversation_id)
        seqs = [line.seq for line in await uow.transcripts.list(conversation_id)]
    assert record is not None and record.revision == 2
    assert seqs == list(range(1, len(seqs) + 1))
    for key, inbound in sent.items():
        again = await service.handle(conversation_id, inbound, message_id=key)
        assert again.replayed and again.to_record() == replies[key].to_record()


@pytest.mark.postgres
@pytest.mark.parametrize("any_service", ["postgres"], indirect=True)
async def test_one_message_racing_itself_is_applied_once_and_replayed(
    any_service: IntakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = any_service
    assert isinstance(service.storage, SqlStorage)
    service.storage.unlocked_turns = True
    start = await service.start(channel="web", with_token=True)
    raced = _race_first_reads(monkeypatch, 2)
    first, second = await asyncio.gather(
        *(
            service.handle(start.conversation_id, Inbound("choice", "start"), message_id="m1")
            for _ in range(2)
        )
    )
    assert len(raced) == 2
    assert sorted([first.replayed, second.replayed]) == [False, True]
    assert first.to_record() == second.to_record()
    assert await user_lines(service, start.conversation_id) == 1
