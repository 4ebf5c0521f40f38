"""Turns read without the conversation's lock (`read_for_turn`, PostgreSQL): two turns of one
conversation that race are both applied, one after the other, and a repeated message id is
still answered with the first reply.

The race is forced: both turns read the conversation before either writes (a barrier after
each turn's first read). With the lock the second read would wait for the first turn's
commit and never reach the barrier.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import event

from bot.engine.types import Inbound
from bot.intake.service import IntakeService
from bot.ports import OutboxMessage
from storage.repositories import SqlConversations
from storage.sqlalchemy_storage import SqlStorage
from storage.turns import COMMIT_POINT_MARK
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


@contextlib.asynccontextmanager
async def statements_sent(storage: SqlStorage) -> AsyncIterator[list[str]]:
    """Every statement the storage's connections send to PostgreSQL meanwhile, in order
    (asyncpg's query logger on each connection while it is checked out of the pool; asyncpg
    calls it soon after each statement, so the block's end waits one turn of the loop)."""
    sent: list[str] = []

    def log(query: Any) -> None:
        sent.append(query.query.strip())

    def checked_out(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(log)

    def checked_in(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.remove_query_logger(log)

    engine = storage.engine.sync_engine
    event.listen(engine, "checkout", checked_out)
    event.listen(engine, "checkin", checked_in)
    try:
        yield sent
        await asyncio.sleep(0)
    finally:
        event.remove(engine, "checkout", checked_out)
        event.remove(engine, "checkin", checked_in)


def _race_first_reads(
    monkeypatch: pytest.MonkeyPatch, racers: int, read: str = "read_for_turn"
) -> list[int]:
    """The first `racers` unlocked reads (`SqlConversations.<read>`) wait for each other
    before their turns go on; the list returned counts every read, the racers' and their
    reruns' (so a test can tell that the race happened, and how it was resolved)."""
    original = getattr(SqlConversations, read)
    barrier = asyncio.Barrier(racers)
    reads: list[int] = []

    async def racing(self: SqlConversations, *args: Any, **kwargs: Any) -> Any:
        found = await original(self, *args, **kwargs)
        reads.append(1)
        if len(reads) <= racers:
            await asyncio.wait_for(barrier.wait(), 5)
        return found

    monkeypatch.setattr(SqlConversations, read, racing)
    return reads


@pytest.mark.postgres
@pytest.mark.parametrize("any_service", ["postgres"], indirect=True)
async def test_two_messages_racing_on_one_conversation_are_both_applied_in_order(
    any_service: IntakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = any_service
    assert isinstance(service.storage, SqlStorage)
    service.storage.unlocked_turns = True
    service.storage.turn_cache = None  # every turn reads: the cache has tests of its own
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
    assert len(raced) == 3  # two racing reads, then the overtaken turn run again
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
    service.storage.turn_cache = None  # every turn reads: the cache has tests of its own
    start = await service.start(channel="web", with_token=True)
    raced = _race_first_reads(monkeypatch, 2)
    first, second = await asyncio.gather(
        *(
            service.handle(start.conversation_id, Inbound("choice", "start"), message_id="m1")
            for _ in range(2)
        )
    )
    assert len(raced) == 3  # two racing reads, then the duplicate run again (replayed)
    assert sorted([first.replayed, second.replayed]) == [False, True]
    assert first.to_record() == second.to_record()
    assert await user_lines(service, start.conversation_id) == 1


# ---------------------------------------------------------------------- a Telegram chat

TOPIC = "telegram.send"
CHAT = "4242"


def _update(
    service: IntakeService, inbound: Inbound, update_id: int, *, claim_for: float | None = 30
) -> Any:
    """A Telegram update of chat `CHAT` as the channel hands it over: the message's id in
    the chat is the update's id, and the reply is claimed for this process's sender."""
    return service.handle_for_channel_key(
        "telegram",
        CHAT,
        inbound,
        message_id=str(update_id),
        scope="telegram:test",
        outbox_topic=TOPIC,
        chat_message_id=update_id,
        claim_for=claim_for,
    )


async def _chat_rows(service: IntakeService) -> tuple[list[OutboxMessage], list[int]]:
    """The chat's outbox rows oldest first, and its kept message ids (read, then rolled back)."""
    async with service.storage.unit_of_work() as uow:
        rows = sorted(await uow.outbox.list(topic=TOPIC), key=lambda row: row.id or 0)
        kept = await uow.chat_messages.take("telegram", CHAT)
    return rows, kept


async def _welcomed(service: IntakeService) -> None:
    """The chat's conversation opened, and its welcome sent (so the next reply is claimed)."""
    await _update(service, Inbound("start"), 1)
    async with service.storage.unit_of_work() as uow:
        (welcome,) = await uow.outbox.list(topic=TOPIC)
        assert welcome.id is not None
        await uow.outbox.mark_done(welcome.id)
        await uow.commit()
    await service.directory.refresh(force=True)


async def test_the_exit_word_in_an_ended_chat_is_claimed_as_every_reply_is(
    any_service: IntakeService,
) -> None:
    """The exit word where the chat's conversation has ended opens nothing: its reply takes
    the route every reply of the chat takes (`ReplyRoute`), claimed for this process's
    sender when nothing of the chat waits before it; behind its deletions when it has some."""
    service = any_service
    await _welcomed(service)
    first = await _update(service, Inbound("text", "exit"), 2)
    assert first.exit and first.claimed == []  # behind the row deleting messages 1 and 2
    async with service.storage.unit_of_work() as uow:
        for row in await uow.outbox.list(topic=TOPIC):
            if row.id is not None and row.status == "pending":
                await uow.outbox.mark_done(row.id)
        await uow.commit()
    again = await service.handle_for_channel_key(
        "telegram",
        CHAT,
        Inbound("text", "exit"),
        message_id="3",
        scope="telegram:test",
        outbox_topic=TOPIC,
        claim_for=30,
    )
    assert again.exit and [row.payload["messages"] for row in again.claimed] == [
        [m.to_record() for m in again.messages]
    ]


async def test_an_overtaken_telegram_turn_runs_again_and_writes_its_reply_once(
    memory_service: IntakeService,
) -> None:
    await _update(memory_service, Inbound("start"), 1)
    memory(memory_service).fail_next("overtaken")
    reply = await _update(memory_service, Inbound("choice", "start"), 2)
    assert not reply.replayed
    assert not memory(memory_service).faults.take("overtaken")  # the fault was used
    rows, kept = await _chat_rows(memory_service)
    assert len(rows) == 2 and kept == [1, 2]
    assert rows[1].payload["messages"] == [m.to_record() for m in reply.messages]
    again = await _update(memory_service, Inbound("choice", "start"), 2)
    assert again.replayed and await _chat_rows(memory_service) == (rows, kept)


@pytest.mark.postgres
@pytest.mark.parametrize("any_service", ["postgres"], indirect=True)
async def test_two_updates_racing_in_one_chat_keep_their_replies_in_order(
    any_service: IntakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both read the chat's conversation before either writes: one commits, the other is
    overtaken and runs again on top. The replies' outbox rows are in the order the turns
    committed (the dispatcher sends a chat's rows by id), the first is claimed for this
    process's sender and the second, behind it, is not; both message ids are kept."""
    service = any_service
    assert isinstance(service.storage, SqlStorage)
    service.storage.unlocked_turns = True
    service.storage.turn_cache = None  # every turn reads: the cache has tests of its own
    await _welcomed(service)
    reads = _race_first_reads(monkeypatch, 2, "read_active_for_turn")
    sent = {2: Inbound("choice", "start"), 3: Inbound("text", "hello there")}
    replies = dict(
        zip(
            sent,
            await asyncio.gather(*(_update(service, inbound, n) for n, inbound in sent.items())),
            strict=True,
        )
    )
    assert len(reads) == 3  # two racing reads, one turn run again
    assert not any(reply.replayed for reply in replies.values())
    view = await service.view_for_channel_key("telegram", CHAT)
    assert view is not None
    said = [
        line["value"]
        for line in (await service.view(view.conversation_id)).transcript or []
        if line["role"] == "user"
    ]
    order = [next(n for n, inbound in sent.items() if inbound.value == value) for value in said]
    assert sorted(order) == [2, 3]
    rows, kept = await _chat_rows(service)
    assert [row.id for row in rows] == sorted(row.id for row in rows if row.id is not None)
    assert [row.payload["messages"] for row in rows[1:]] == [
        [m.to_record() for m in replies[n].messages] for n in order
    ]
    assert [row.attempts for row in rows] == [1, 1, 0]
    assert [len(replies[n].claimed) for n in order] == [1, 0]
    assert kept == [1, *order]


@pytest.mark.postgres
@pytest.mark.parametrize("any_service", ["postgres"], indirect=True)
async def test_a_telegram_turn_is_two_statements_on_postgres(any_service: IntakeService) -> None:
    """The turn of an open conversation: the unlocked read, then one statement that writes
    the turn, its reply's outbox row and the message id and commits by itself (found by the
    e2e proxy through `COMMIT_POINT_MARK`). It was six: BEGIN, the locked read, the message
    id, the outbox row, the save, COMMIT. With `unlocked_turns` off it locks as before."""
    service = any_service
    storage = service.storage
    assert isinstance(storage, SqlStorage)
    storage.unlocked_turns = True
    await _welcomed(service)
    async with statements_sent(storage) as sent:
        reply = await _update(service, Inbound("choice", "start"), 2)
    assert len(reply.claimed) == 1
    assert len(sent) == 2, sent
    assert "FOR UPDATE" not in sent[0] and sent[1].startswith(COMMIT_POINT_MARK)
    assert "INSERT INTO outbox" in sent[1] and "INSERT INTO chat_messages" in sent[1]
    storage.unlocked_turns = False
    async with statements_sent(storage) as sent:
        await _update(service, Inbound("text", "hello there"), 3)
    assert sent[0].startswith("BEGIN") and "FOR UPDATE" in sent[1]
    assert len(sent) == 6 and sent[-1].startswith("COMMIT")
    rows, kept = await _chat_rows(service)
    assert len(rows) == 3 and kept == [1, 2, 3]


async def test_a_telegram_turn_is_two_hand_offs_on_sqlite(
    service: IntakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: the read with its BEGIN IMMEDIATE, then the write, the outbox row, the message
    id and COMMIT, each one trip to aiosqlite's thread (it was four: the message id and the
    outbox row had one each)."""
    await _welcomed(service)
    original = aiosqlite.Connection._execute
    trips: list[int] = []

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(1)
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    reply = await _update(service, Inbound("choice", "start"), 2)
    monkeypatch.undo()
    assert len(trips) == 2 and len(reply.claimed) == 1
    rows, kept = await _chat_rows(service)
    assert [row.attempts for row in rows] == [1, 1] and kept == [1, 2]


@pytest.mark.postgres
@pytest.mark.parametrize("any_service", ["postgres"], indirect=True)
async def test_a_web_turn_with_nothing_beside_it_is_two_statements(
    any_service: IntakeService,
) -> None:
    """A turn with no reply row and no chat message id to write (the web's, even without a
    message id) still reads unlocked and commits by its one write."""
    service = any_service
    assert isinstance(service.storage, SqlStorage)
    service.storage.unlocked_turns = True
    service.storage.turn_cache = None  # every turn reads: the cache has tests of its own
    start = await service.start(channel="web", with_token=True)
    await service.directory.refresh(force=True)
    async with statements_sent(service.storage) as sent:
        await service.handle(start.conversation_id, Inbound("choice", "start"))
    assert len(sent) == 2 and sent[1].startswith(COMMIT_POINT_MARK), sent
