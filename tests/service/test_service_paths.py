"""The service's retry and failure paths, driven on purpose through the in-memory store.

Over a real database these paths run only when test timing happens to hit them (two requests
racing, a reference number drawn twice, the database dropping mid-turn); here each test makes
the one thing happen with `MemoryStorage.fail_next` (or a reference drawn twice) and checks
what the person and the intake team would see.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.engine.types import Inbound
from bot.intake.rendering import Reply
from bot.intake.service import IntakeService
from bot.ports import ConcurrencyError, StorageError
from storage.memory import MemoryStorage
from tests.service.conftest import make_memory_service
from tests.service.test_service import GOOD_PATH, REFERENCE


def memory(service: IntakeService) -> MemoryStorage:
    assert isinstance(service.storage, MemoryStorage)
    return service.storage


async def to_summary(service: IntakeService) -> str:
    start = await service.start(channel="web", with_token=True)
    for number, (kind, value) in enumerate(GOOD_PATH):
        await service.handle(start.conversation_id, Inbound(kind, value), message_id=f"m{number}")  # type: ignore[arg-type]
    return start.conversation_id


async def submit(service: IntakeService, conversation_id: str) -> Reply:
    return await service.handle(conversation_id, Inbound("choice", "submit"), message_id="final")


async def user_lines(service: IntakeService, conversation_id: str) -> int:
    view = await service.view(conversation_id)
    return [line["role"] for line in view.transcript or []].count("user")


async def test_a_reference_collision_is_retried_with_a_new_number() -> None:
    """Catches: a collision losing the report, raising to the person, or storing two reports
    (the retry must redo the whole turn, not only the insert)."""
    drawn: Iterator[str] = iter(["AAAA-2222", "AAAA-2222", "BBBB-3333"])
    first = await make_memory_service(reference_factory=lambda: next(drawn))
    taken = await to_summary(first)
    assert (await submit(first, taken)).reference == "AAAA-2222"
    # The same store, a second person: their first number is already taken.
    second = IntakeService(
        first.storage,
        first.engine,
        first.catalogs,
        first.directory,
        reference_factory=lambda: next(drawn),
    )
    conversation_id = await to_summary(second)
    done = await submit(second, conversation_id)
    assert done.step == "submitted" and done.reference == "BBBB-3333"
    assert REFERENCE.match(done.reference)
    async with second.storage.unit_of_work() as uow:
        reports = await uow.reports.list()
        queued = await uow.outbox.list(topic="report.submitted")
    assert sorted(report.reference for report in reports) == ["AAAA-2222", "BBBB-3333"]
    assert [r.conversation_id for r in reports if r.reference == "BBBB-3333"] == [conversation_id]
    assert sorted(message.payload["reference"] for message in queued) == [
        "AAAA-2222",
        "BBBB-3333",
    ]


async def test_an_injected_reference_collision_stores_exactly_one_report(
    memory_service: IntakeService,
) -> None:
    """Catches: the DuplicateError of a collision escaping, or the retry adding a second
    report or a second hand-off message."""
    conversation_id = await to_summary(memory_service)
    memory(memory_service).fail_next("reference")
    done = await submit(memory_service, conversation_id)
    assert done.step == "submitted" and done.reference
    async with memory_service.storage.unit_of_work() as uow:
        assert await uow.reports.count() == 1
        assert (await uow.reports.get(done.reference)) is not None
        queued = await uow.outbox.list(topic="report.submitted")
    assert [message.payload["reference"] for message in queued] == [done.reference]


async def test_a_concurrent_duplicate_message_is_replayed_not_applied_twice(
    memory_service: IntakeService,
) -> None:
    """A retry of message "m9" whose read missed the reply (the first request committed while
    it waited for the lock): its write is refused as a duplicate and the turn, run again,
    replays the first reply. Catches: the retry applying the answer a second time, or
    answering differently from the first time."""
    start = await memory_service.start(channel="web", with_token=True)
    first = await memory_service.handle(
        start.conversation_id, Inbound("choice", "start"), message_id="m9"
    )
    memory(memory_service).fail_next("miss_reply")
    again = await memory_service.handle(
        start.conversation_id, Inbound("choice", "start"), message_id="m9"
    )
    assert again.replayed and again.to_record() == first.to_record()
    assert await user_lines(memory_service, start.conversation_id) == 1
    assert not memory(memory_service).faults.take("miss_reply")  # the fault was used


async def test_a_revision_conflict_surfaces_and_writes_nothing(
    memory_service: IntakeService,
) -> None:
    """Someone else saved the conversation between the turn's read and its write. Catches: a
    lost update (the turn overwriting the other writer's state) and a half-written turn; the
    person's retry then works."""
    start = await memory_service.start(channel="web", with_token=True)
    before = await memory_service.view(start.conversation_id)
    memory(memory_service).fail_next("revision")
    with pytest.raises(ConcurrencyError):
        await memory_service.handle(
            start.conversation_id, Inbound("choice", "start"), message_id="m1"
        )
    after = await memory_service.view(start.conversation_id)
    assert after.to_record() == before.to_record()
    retried = await memory_service.handle(
        start.conversation_id, Inbound("choice", "start"), message_id="m1"
    )
    assert not retried.replayed and retried.step != before.step
    assert await user_lines(memory_service, start.conversation_id) == 1


@pytest.mark.parametrize("fault", ["read", "save_turn", "commit"])
async def test_the_database_failing_mid_turn_commits_nothing(
    memory_service: IntakeService, fault: str
) -> None:
    """Catches: an error swallowed (the person told it worked), a turn half stored (state
    moved on without its transcript line, or the reply remembered so a retry is wrongly
    replayed), or the store left locked so that the next turn hangs."""
    conversation_id = await to_summary(memory_service)
    before = await memory_service.view(conversation_id)
    memory(memory_service).fail_next(fault)  # type: ignore[arg-type]
    with pytest.raises(StorageError):
        await submit(memory_service, conversation_id)
    assert (await memory_service.view(conversation_id)).to_record() == before.to_record()
    async with memory_service.storage.unit_of_work() as uow:
        assert await uow.reports.count() == 0
        assert await uow.outbox.list(topic="report.submitted") == []
    done = await submit(memory_service, conversation_id)
    assert done.step == "submitted" and not done.replayed
    async with memory_service.storage.unit_of_work() as uow:
        assert await uow.reports.count() == 1
