"""A process that serves every turn of its conversations keeps what its turns wrote
(storage.turn_cache): the next turn of a conversation starts from that and does not read, and
the write's revision check finds anything that changed the conversation meanwhile, on SQLite
and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text

from bot.app import build_app
from bot.config import Settings
from bot.engine.types import ConversationState, Inbound
from bot.intake.service import ConversationNotFound, IntakeService
from bot.ports import ConversationRecord
from storage.engine import POOL_SIZE
from storage.sqlalchemy_storage import SqlStorage, create_storage
from storage.turn_cache import TurnCache
from tests.service.test_service_paths import user_lines
from tests.service.test_service_unlocked_turns import (
    _chat_rows,
    _update,
    _welcomed,
    statements_sent,
)

BACKENDS = pytest.mark.parametrize("any_service", ["sqlite", "postgres"], indirect=True)


def _storage(service: IntakeService) -> SqlStorage:
    assert isinstance(service.storage, SqlStorage)
    assert service.storage.turn_cache is not None  # a single process keeps its turns
    return service.storage


async def _started(service: IntakeService) -> str:
    """A web conversation with one turn taken (its write is what is kept)."""
    start = await service.start(channel="web", with_token=True)
    await service.handle(start.conversation_id, Inbound("choice", "start"), message_id="m1")
    return start.conversation_id


class _Trips:
    """Hand-offs to aiosqlite's thread while counting."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = aiosqlite.Connection._execute

        async def counted(connection: aiosqlite.Connection, fn: Any, *args: Any) -> Any:
            self.count += 1
            return await original(connection, fn, *args)

        monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)


@BACKENDS
async def test_the_next_turn_is_its_write_alone(
    any_service: IntakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: one statement (the write, committing by itself) where the read was another;
    SQLite: one hand-off (BEGIN IMMEDIATE, the write, COMMIT) where the read was another."""
    storage = _storage(any_service)
    conversation_id = await _started(any_service)
    await any_service.handle(conversation_id, Inbound("text", "warm"), message_id="m2")
    inbound = Inbound("text", "hello there")
    if storage.backend == "postgresql":
        async with statements_sent(storage) as sent:
            reply = await any_service.handle(conversation_id, inbound, message_id="m3")
        assert len(sent) == 1 and "UPDATE conversations" in sent[0], sent
    else:
        trips = _Trips(monkeypatch)
        reply = await any_service.handle(conversation_id, inbound, message_id="m3")
        monkeypatch.undo()
        assert trips.count == 1
    assert not reply.replayed
    assert await user_lines(any_service, conversation_id) == 3
    again = await any_service.handle(conversation_id, inbound, message_id="m3")
    assert again.replayed and again.to_record() == reply.to_record()


@BACKENDS
async def test_the_first_turn_after_the_start_is_its_write_alone(
    any_service: IntakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A web conversation's start is kept as a turn's write is, so its first turn does not
    read either (on SQLite that read held the single writer through the whole turn)."""
    storage = _storage(any_service)
    start = await any_service.start(channel="web", with_token=True)
    inbound = Inbound("choice", "start")
    if storage.backend == "postgresql":
        async with statements_sent(storage) as sent:
            reply = await any_service.handle(
                start.conversation_id, inbound, message_id="m1", token=start.token
            )
        assert len(sent) == 1 and "UPDATE conversations" in sent[0], sent
    else:
        trips = _Trips(monkeypatch)
        reply = await any_service.handle(
            start.conversation_id, inbound, message_id="m1", token=start.token
        )
        monkeypatch.undo()
        assert trips.count == 1
    assert not reply.replayed and reply.step != start.step
    again = await any_service.handle(
        start.conversation_id, inbound, message_id="m1", token=start.token
    )
    assert again.replayed and again.to_record() == reply.to_record()


@BACKENDS
async def test_a_conversation_changed_by_someone_else_is_read_again(
    any_service: IntakeService,
) -> None:
    """Another process saved the conversation after this one's last turn (here the storage's
    own update, which knows nothing of what is kept): the kept revision is stale, the write
    finds it and writes nothing, and the turn runs again from a read, on what they left."""
    storage = _storage(any_service)
    conversation_id = await _started(any_service)
    async with storage.unit_of_work() as uow:
        record = await uow.conversations.get(conversation_id)
        assert record is not None
        revision = record.revision
        record.reference = "CHANGED-ELSEWHERE"
        await uow.conversations.update(record)
        await uow.commit()
    reply = await any_service.handle(
        conversation_id, Inbound("text", "hello there"), message_id="m2"
    )
    assert not reply.replayed
    async with storage.unit_of_work() as uow:
        after = await uow.conversations.get(conversation_id)
    assert after is not None
    assert (after.revision, after.reference) == (revision + 2, "CHANGED-ELSEWHERE")
    assert await user_lines(any_service, conversation_id) == 2


@BACKENDS
async def test_a_conversation_deleted_meanwhile_is_not_found(any_service: IntakeService) -> None:
    storage = _storage(any_service)
    conversation_id = await _started(any_service)
    async with storage.engine.begin() as connection:
        await connection.execute(
            text("DELETE FROM inbound_messages WHERE conversation_id = :id"),
            {"id": conversation_id},
        )
        await connection.execute(
            text("DELETE FROM conversations WHERE id = :id"), {"id": conversation_id}
        )
    with pytest.raises(ConversationNotFound):
        await any_service.handle(conversation_id, Inbound("text", "hello"), message_id="m2")


@BACKENDS
async def test_a_chats_next_turn_is_its_write_alone(
    any_service: IntakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Telegram chat's conversation, found by the chat's address: the same, with the reply's
    outbox row and the message id in the write; and a repeated update is replayed."""
    storage = _storage(any_service)
    await _welcomed(any_service)
    await _update(any_service, Inbound("choice", "start"), 2)
    inbound = Inbound("text", "hello there")
    if storage.backend == "postgresql":
        async with statements_sent(storage) as sent:
            reply = await _update(any_service, inbound, 3)
        assert len(sent) == 1 and "INSERT INTO outbox" in sent[0], sent
    else:
        trips = _Trips(monkeypatch)
        reply = await _update(any_service, inbound, 3)
        monkeypatch.undo()
        assert trips.count == 1
    assert len(reply.claimed) <= 1 and not reply.replayed
    again = await _update(any_service, inbound, 3)
    # Kept without its words (the outbox row has them), and not answered again.
    assert again.replayed and again.messages == []
    assert again.to_record(words=False) == reply.to_record(words=False)
    rows, kept = await _chat_rows(any_service)
    assert len(rows) == 3 and kept == [1, 2, 3]


@BACKENDS
async def test_a_chats_conversation_ended_elsewhere_is_not_continued(
    any_service: IntakeService,
) -> None:
    """The chat's conversation was ended by someone else after this worker's last turn of it
    (here: marked ended through the storage): the kept one is stale, the write finds it, and
    the rerun's read finds no open conversation, so the message opens a new one."""
    storage = _storage(any_service)
    await _welcomed(any_service)
    first = await _update(any_service, Inbound("choice", "start"), 2)
    async with storage.unit_of_work() as uow:
        record = await uow.conversations.get(first.conversation_id)
        assert record is not None
        record.state.status = "ended"
        await uow.conversations.update(record)
        await uow.commit()
    reply = await _update(any_service, Inbound("text", "hello there"), 3)
    assert reply.conversation_id != first.conversation_id


@BACKENDS
async def test_an_erasure_drops_what_was_kept(any_service: IntakeService) -> None:
    """What was typed must not outlive its erasure in this process's memory either."""
    storage = _storage(any_service)
    assert storage.turn_cache is not None
    conversation_id = await _started(any_service)
    assert len(storage.turn_cache) == 1
    async with storage.unit_of_work() as uow:
        await uow.erasure.conversation(conversation_id, final_reply=None)
        await uow.commit()
    assert storage.turn_cache.take(conversation_id) is None


async def test_the_storage_keeps_turns_only_when_asked(tmp_path: Any) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/intake.sqlite3"
    for keep, expected in ((True, True), (False, False)):
        storage = await create_storage(url, keep_turns=keep)
        assert (storage.turn_cache is not None) is expected
        await storage.close()


@pytest.mark.parametrize(
    ("reuse_port", "setting", "kept"),
    [(False, None, True), (True, None, False), (False, "0", False), (True, "1", False)],
)
def test_only_a_sole_serving_worker_keeps_its_turns(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    reuse_port: bool,
    setting: str | None,
    kept: bool,
) -> None:
    """`intake serve` with one worker keeps them, unless told not to (INTAKE_KEEP_TURNS=0:
    one process per port behind a round-robin proxy); a worker beside others on one port
    (`--workers N`, SO_REUSEPORT) never does."""
    from aiohttp import web

    import bot.app
    from bot import cli

    asked: list[bool] = []

    def fake_build_app(settings: Settings, **options: Any) -> web.Application:
        asked.append(options["keep_turns"])
        assert options["pool_size"] == POOL_SIZE  # the worker's share, as `_serve` gave it
        return build_app(settings, **options)

    monkeypatch.setattr(bot.app, "build_app", fake_build_app)
    monkeypatch.setattr(web, "run_app", lambda *args, **kwargs: None)
    monkeypatch.setattr(cli, "configure_logging", lambda: None)
    env = {"INTAKE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/intake.sqlite3"}
    if setting is not None:
        env["INTAKE_KEEP_TURNS"] = setting
    cli._run_worker(Settings.from_env(env), reuse_port, POOL_SIZE)
    assert asked == [kept]


# ---------------------------------------------------------------------- the cache itself


def _record(conversation_id: str, revision: int) -> ConversationRecord:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    return ConversationRecord(
        id=conversation_id,
        channel="web",
        state=ConversationState(step="welcome"),
        created_at=at,
        updated_at=at,
        revision=revision,
        token_hash="h",
        transcript_seq=3,
    )


def test_what_is_kept_is_taken_once_as_a_fresh_record() -> None:
    cache = TurnCache()
    record = _record("c1", 4)
    cache.put(record, '{"step": "welcome"}')
    taken = cache.take("c1")
    assert taken is not None and taken is not record
    assert (taken.revision, taken.token_hash, taken.transcript_seq) == (4, "h", 3)
    assert taken.state.step == "welcome"
    assert cache.take("c1") is None  # taken: the next turn reads until a write puts it back


def test_an_older_revision_does_not_replace_a_newer_one() -> None:
    cache = TurnCache()
    cache.put(_record("c1", 5), '{"step": "later"}')
    cache.put(_record("c1", 4), '{"step": "welcome"}')
    taken = cache.take("c1")
    assert taken is not None and (taken.revision, taken.state.step) == (5, "later")


def test_a_chats_conversation_is_kept_while_open() -> None:
    cache = TurnCache(size=2)
    open_one = _record("c1", 1)
    open_one.channel, open_one.channel_key = "telegram", "42"
    cache.put(open_one, '{"step": "welcome"}')
    taken = cache.take_active("telegram", "42")
    assert taken is not None and taken.id == "c1"
    assert cache.take_active("telegram", "42") is None  # taken
    cache.put(open_one, '{"step": "done", "status": "submitted"}')
    assert cache.take_active("telegram", "42") is None  # ended: the next message opens one
    cache.put(open_one, '{"step": "welcome"}')
    for n in (2, 3):  # pushed out by two others: its address goes with it
        cache.put(_record(f"c{n}", 1), '{"step": "welcome"}')
    assert cache.take_active("telegram", "42") is None


def test_an_entry_is_used_only_for_a_while() -> None:
    now = [0.0]
    cache = TurnCache(keep_seconds=600, clock=lambda: now[0])
    cache.put(_record("c1", 1), '{"step": "welcome"}')
    cache.put(_record("c2", 1), '{"step": "welcome"}')
    now[0] = 601.0
    assert cache.take("c1") is None  # too old: the turn reads
    cache.put(_record("c3", 1), '{"step": "welcome"}')
    assert len(cache) == 1  # c2 expired too, dropped as c3 was written
    assert cache.take("c3") is not None


def test_the_least_recently_written_go_first() -> None:
    cache = TurnCache(size=2)
    for n, conversation_id in enumerate(("c1", "c2", "c1", "c3")):
        cache.put(_record(conversation_id, n + 1), '{"step": "welcome"}')
    assert len(cache) == 2
    assert cache.take("c2") is None
    assert cache.take("c1") is not None and cache.take("c3") is not None
