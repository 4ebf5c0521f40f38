"""Through the service, on both databases: a web turn that writes as the whole of its unit of
work goes in a batch with the others queued meanwhile (`storage.write_batches`: on SQLite
`storage.sqlite_group_commit`, on PostgreSQL `storage.pg_group_commit`), and no turn is lost
or doubled by it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from bench.script import web_conversations
from bot.app import build_service
from bot.config import Settings
from bot.engine.types import Inbound
from bot.intake.service import IntakeService
from storage.sqlalchemy_storage import SqlStorage
from tests.fixtures import SMALL_DIRECTORY

BACKENDS = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


@contextlib.asynccontextmanager
async def serving(database_url: str, *, keep_turns: bool = True) -> AsyncIterator[IntakeService]:
    """The service as one serving worker runs it (`keep_turns`: the only worker)."""
    service = await build_service(
        Settings(database_url=database_url, directory_csv=SMALL_DIRECTORY),
        keep_turns=keep_turns,
    )
    try:
        yield service
    finally:
        await service.storage.close()


def sql_storage(service: IntakeService) -> SqlStorage:
    assert isinstance(service.storage, SqlStorage)
    return service.storage


async def reports_stored(storage: SqlStorage) -> int:
    async with storage.engine.connect() as connection:
        return int(await connection.scalar(text("SELECT count(*) FROM reports")) or 0)


async def whole_conversations_share_batches(service: IntakeService) -> None:
    """20 web conversations at once, start to submission: most of their writes went in
    batches shared with others, and every one of them submitted its report."""
    storage = sql_storage(service)
    writes = storage.group_commit
    await web_conversations(service, 20, at_once=20, numbers=iter(range(1_000_000)))
    assert writes.writes > 20 * 10  # most turns wrote this way
    assert writes.batches < writes.writes / 2
    assert await reports_stored(storage) == 20


@BACKENDS
async def test_web_turns_of_many_conversations_share_commits_and_all_go_through(
    database_url: str,
) -> None:
    """The product's own path: a turn started from what this worker kept, and a new
    conversation, write as the whole of their unit of work."""
    async with serving(database_url) as service:
        await whole_conversations_share_batches(service)


@BACKENDS
async def test_two_turns_of_one_conversation_at_once_are_both_applied_in_turn(
    database_url: str,
) -> None:
    """Neither is lost: both writes go in one batch, the second finds the first's revision
    (on SQLite the batch's earlier savepoints, on PostgreSQL the pipeline's earlier
    statements) and runs again."""
    async with serving(database_url) as service:
        reply = await service.start(channel="web", locale_hints=("en", None), with_token=True)
        async with service.storage.unit_of_work() as uow:
            started = await uow.conversations.get(reply.conversation_id)
        assert started is not None
        first, second = await asyncio.gather(
            service.handle(
                reply.conversation_id, Inbound("command", "help"), message_id="a", token=reply.token
            ),
            service.handle(
                reply.conversation_id, Inbound("command", "help"), message_id="b", token=reply.token
            ),
        )
        assert first.messages and second.messages
        async with service.storage.unit_of_work() as uow:
            record = await uow.conversations.get(reply.conversation_id)
        assert record is not None and record.revision == started.revision + 2  # both turns


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_turns_that_read_first_hand_their_connection_back_and_write_in_batches(
    database_url: str,
) -> None:
    """Where the worker keeps no turns (one of several workers), every turn reads first: the
    read, outside a transaction, hands its connection back (`Db.hand_back`), so the turn
    holds none through its own work and its write goes in a batch as well."""
    async with serving(database_url, keep_turns=False) as service:
        storage = sql_storage(service)
        assert storage.turn_cache is None
        reply = await service.start(channel="web", locale_hints=("en", None), with_token=True)
        async with storage.unit_of_work() as uow:
            record, _ = await uow.conversations.read_for_turn(
                reply.conversation_id, scope=reply.conversation_id, message_id="x"
            )
            assert record is not None and uow.transaction is None  # handed back
            assert storage.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        await whole_conversations_share_batches(service)
