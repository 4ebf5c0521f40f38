"""What a settle sends to PostgreSQL: the sent reply recorded with its chat message ids, then
the chat's next reply claimed, each one statement committing by itself, with no transaction
(so no session idle in one) around them. It was BEGIN, three statements and COMMIT."""

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
async def test_a_settle_is_two_statements_committing_by_themselves(storage: SqlStorage) -> None:
    """A first message (chat c0) is sent and settled first, so that asyncpg has prepared the
    statements, and read the types, on the one connection these sequential steps use."""
    sending = {n: asyncio.Event() for n in (0, 1, 2)}
    go_on = {n: asyncio.Event() for n in (0, 1, 2)}
    go_on[0].set()
    settled = asyncio.Event()

    dispatcher = OutboxDispatcher(storage, "chat", _sender(sending, go_on), poll_interval=3600)
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
    assert len(sent) == 2, sent
    assert all(statement.startswith(COMMIT_POINT_MARK) for statement in sent), sent
    assert "INSERT INTO chat_messages" in sent[0] and "claimed_until = $3" in sent[1]
    assert dispatcher.counters == {"sent": 3}
    async with storage.unit_of_work() as uow:
        assert await uow.chat_messages.take("telegram", "c1") == [101, 102]
        assert [message.status for message in await uow.outbox.list()] == ["done"] * 3
        await uow.commit()


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
async def test_a_settle_is_two_hand_offs_on_sqlite(
    storage: SqlStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: the outcome with the ids and its COMMIT, then the claim with its COMMIT, one
    trip to aiosqlite's thread each (BEGIN IMMEDIATE goes with the first statement). It was
    four: the outcome, the ids, the claim, the COMMIT."""
    sending = {n: asyncio.Event() for n in (1, 2)}
    go_on = {n: asyncio.Event() for n in (1, 2)}

    dispatcher = OutboxDispatcher(storage, "chat", _sender(sending, go_on), poll_interval=3600)
    dispatcher.start()
    original = aiosqlite.Connection._execute
    trips: list[int] = []

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(1)
        return await original(self, fn, *args, **kwargs)

    try:
        async with asyncio.timeout(20):
            await _add(storage, dispatcher, "c1", 1, 2)
            await sending[1].wait()
            monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
            go_on[1].set()
            await sending[2].wait()
            monkeypatch.undo()
        go_on[2].set()
    finally:
        await dispatcher.stop()
    assert len(trips) == 2
    async with storage.unit_of_work() as uow:
        assert await uow.chat_messages.take("telegram", "c1") == [101, 102]
        await uow.commit()
