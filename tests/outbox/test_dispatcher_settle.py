"""What a settle sends to PostgreSQL: the sent reply recorded with its chat message ids and
the chat's next reply claimed, in one statement committing by itself, with no transaction (so
no session idle in one) around it. It was BEGIN, three statements and COMMIT, then two
statements (the outcome, then a claim for every free slot). With no slot to spare besides
its own, the settle still claims the oldest message of any chat in a second statement."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite
import pytest

from bot.outbox.dispatcher import OutboxDispatcher, Outcome
from bot.ports import ChatMessageIds, OutboxMessage
from storage.sqlalchemy_storage import SqlStorage
from storage.turns import COMMIT_POINT_MARK
from tests.service.test_service_unlocked_turns import statements_sent


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_settle_is_one_statement_claiming_the_chats_next_reply(
    storage: SqlStorage,
) -> None:
    sent = await _settle_statements(storage, concurrency=16)
    assert len(sent) == 1, sent
    assert sent[0].startswith(COMMIT_POINT_MARK), sent
    assert "INSERT INTO chat_messages" in sent[0] and "claimed_until = $9" in sent[0]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_with_no_slot_to_spare_the_settle_claims_the_oldest_message_after_it(
    storage: SqlStorage,
) -> None:
    """One slot: the one the sent message frees goes to the oldest message of any chat (here
    the chat's own next one), claimed in a statement of its own after the outcome's."""
    sent = await _settle_statements(storage, concurrency=1)
    assert len(sent) == 2, sent
    assert all(statement.startswith(COMMIT_POINT_MARK) for statement in sent), sent
    assert "INSERT INTO chat_messages" in sent[0] and "claimed_until = $3" in sent[1]


async def _settle_statements(storage: SqlStorage, *, concurrency: int) -> list[str]:
    """The statements of the settle of chat c1's first message, which claims its second. A
    first message (chat c0) is sent and settled first, so that asyncpg has prepared the
    statements, and read the types, on the one connection these sequential steps use."""
    sending = {n: asyncio.Event() for n in (0, 1, 2)}
    go_on = {n: asyncio.Event() for n in (0, 1, 2)}
    go_on[0].set()
    settled = asyncio.Event()

    dispatcher = OutboxDispatcher(
        storage, "chat", _sender(sending, go_on), poll_interval=3600, concurrency=concurrency
    )
    dispatcher.observers.append(lambda _message, _outcome: settled.set())
    dispatcher.start()
    try:
        async with asyncio.timeout(20):
            await _add(storage, dispatcher, "c0", 0)
            await settled.wait()
            await _add(storage, dispatcher, "c1", 1, 2)
            await sending[1].wait()  # claimed by the loop, which then sleeps for the hour
            async with statements_sent(storage) as sent:
                go_on[1].set()
                await sending[2].wait()  # claimed by the first one's settle
        go_on[2].set()
    finally:
        await dispatcher.stop()
    assert dispatcher.counters == {"sent": 3}
    async with storage.unit_of_work() as uow:
        assert await uow.chat_messages.take("telegram", "c1") == [101, 102]
        assert [message.status for message in await uow.outbox.list()] == ["done"] * 3
        await uow.commit()
    return [statement for statement in sent if not _reads_a_type(statement)]


def _reads_a_type(statement: str) -> bool:
    """asyncpg's own reading of a type's description: once per connection and statement, and
    the pool hands its connections out in turn, so the warm-up may have prepared the
    settle's statement on another connection."""
    return "typeinfo_tree" in statement or "set_config('jit'" in statement


def _sender(
    sending: dict[int, asyncio.Event], go_on: dict[int, asyncio.Event]
) -> Callable[[OutboxMessage], Awaitable[Outcome]]:
    """Sends message n when `go_on[n]` is set, having set `sending[n]`; the chat gives it the
    id 100 + n."""

    async def send(message: OutboxMessage) -> Outcome:
        n = message.payload["n"]
        sending[n].set()
        await go_on[n].wait()
        return Outcome.done(sent=ChatMessageIds("telegram", message.ordering_key, (100 + n,)))

    return send


async def _add(storage: SqlStorage, dispatcher: OutboxDispatcher, key: str, *ns: int) -> None:
    async with storage.unit_of_work() as uow:
        await uow.outbox.add([OutboxMessage("chat", key, {"n": n}) for n in ns])
        await uow.commit()
    dispatcher.wake()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_settle_is_one_hand_off_on_sqlite(
    storage: SqlStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: the outcome, the ids and the claim of the chat's next message with their
    COMMIT, in one trip to aiosqlite's thread (BEGIN IMMEDIATE goes with the first
    statement). It was four (the outcome, the ids, the claim, the COMMIT), then two."""
    sending = {n: asyncio.Event() for n in (1, 2)}
    go_on = {n: asyncio.Event() for n in (1, 2)}

    dispatcher = OutboxDispatcher(storage, "chat", _sender(sending, go_on), poll_interval=3600)
    original = aiosqlite.Connection._execute
    trips: list[int] = []

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(1)
        return await original(self, fn, *args, **kwargs)

    try:
        async with asyncio.timeout(20):
            await _add(storage, dispatcher, "c1", 1, 2)
            dispatcher.start()  # after the add: the loop claims once, then sleeps for the hour
            await sending[1].wait()
            monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
            go_on[1].set()
            await sending[2].wait()
            monkeypatch.undo()
        go_on[2].set()
    finally:
        await dispatcher.stop()
    assert len(trips) == 1
    async with storage.unit_of_work() as uow:
        assert await uow.chat_messages.take("telegram", "c1") == [101, 102]
        await uow.commit()
