"""A turn read without the lock and written and committed in one step (`read_for_turn`,
`UnitOfWork.commit_turn`), and a new conversation stored in one step (`commit_new`).

On PostgreSQL (with `unlocked_turns`) the read runs outside a transaction and the write is a
statement of its own that commits by itself; on SQLite the read keeps the single writer and
the write goes with its COMMIT in one hand-off; memory does both in order. Whatever the
backend: a turn committed in between, or a message id already answered, makes the write fail
having written nothing, and nothing of a failed write is half kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bot.engine.types import ConversationState
from bot.ports import (
    ConcurrencyError,
    ConversationRecord,
    DuplicateError,
    OutboxMessage,
    OvertakenError,
    Storage,
    StorageError,
    TranscriptEntry,
)
from storage import create_storage, upgrade
from storage.sqlalchemy_storage import SqlStorage, SqlUnitOfWork
from tests.storage.wal_pages import last_commit_pages

NOW = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)
STATE = ConversationState(
    step="experience", locale="uk", answers={"what": "Rosé – ünïcode ✓", "n": [1, None, True]}
)


def _unlocked(storage: Storage) -> Storage:
    """PostgreSQL reads a turn without the lock (`UNLOCKED_TURNS`, whatever its default)."""
    if isinstance(storage, SqlStorage):
        storage.unlocked_turns = True
    return storage


def _record(conversation_id: str = "c1") -> ConversationRecord:
    return ConversationRecord(
        id=conversation_id,
        channel="web",
        state=STATE,
        created_at=NOW,
        updated_at=NOW,
        token_hash="ab" * 32,
    )


def _lines(record: ConversationRecord, text: str) -> list[TranscriptEntry]:
    """Two transcript lines numbered from the record's next one, which they advance."""
    seq = record.transcript_seq
    record.transcript_seq = seq + 2
    return [
        TranscriptEntry(seq, "user", {"text": text, "kind": "text", "value": text}, NOW),
        TranscriptEntry(seq + 1, "bot", {"text": f"ответ {text} ✓", "choices": []}, NOW),
    ]


async def _new(storage: Storage, conversation_id: str = "c1") -> ConversationRecord:
    record = _record(conversation_id)
    async with storage.unit_of_work() as uow:
        await uow.commit_new(record, _lines(record, "welcome"))
    return record


async def _turn(
    storage: Storage, text: str, message_id: str | None, conversation_id: str = "c1"
) -> ConversationRecord:
    async with storage.unit_of_work() as uow:
        record, prior = await uow.conversations.read_for_turn(
            conversation_id, scope=conversation_id, message_id=message_id
        )
        assert record is not None and prior is None
        record.state = ConversationState(step=text, answers={"said": text})
        entries = _lines(record, text)
        reply = None if message_id is None else {"said": text, "é": "✓"}
        await uow.commit_turn(
            record, entries, scope=conversation_id, message_id=message_id, reply=reply
        )
    return record


async def _stored(
    storage: Storage, message_id: str | None = None, conversation_id: str = "c1"
) -> tuple[ConversationRecord, dict[str, Any] | None, list[tuple[int, str, Any]]]:
    async with storage.unit_of_work() as uow:
        record, prior = await uow.conversations.get_for_turn(
            conversation_id, scope=conversation_id, message_id=message_id
        )
        lines = await uow.transcripts.list(conversation_id)
    assert record is not None
    return record, prior, [(e.seq, e.role, e.payload) for e in lines]


async def test_commit_turn_writes_and_commits_the_turn(any_storage: Storage) -> None:
    storage = _unlocked(any_storage)
    await _new(storage)
    await _turn(storage, "first", "m1")
    await _turn(storage, "second", None)
    record, prior, lines = await _stored(storage, "m1")
    assert record.revision == 2 and record.transcript_seq == 7
    assert record.state == ConversationState(step="second", answers={"said": "second"})
    assert prior == {"said": "first", "é": "✓"}
    assert [seq for seq, _, _ in lines] == [1, 2, 3, 4, 5, 6]
    assert lines[3] == (4, "bot", {"text": "ответ first ✓", "choices": []})
    # The unit of work is over once commit_turn returns.
    with pytest.raises(StorageError):
        async with storage.unit_of_work() as uow:
            loaded, _ = await uow.conversations.read_for_turn("c1", scope="c1", message_id="m3")
            assert loaded is not None
            await uow.commit_turn(loaded, [], scope="c1", message_id="m3", reply={"r": 3})
            await uow.commit()


async def test_a_stale_record_is_refused_and_nothing_is_written(any_storage: Storage) -> None:
    storage = _unlocked(any_storage)
    await _new(storage)
    async with storage.unit_of_work() as uow:
        stale, _ = await uow.conversations.read_for_turn("c1", scope="c1", message_id="m1")
        await uow.commit()
    assert stale is not None
    await _turn(storage, "first", "m1")
    before = await _stored(storage, "m2")
    with pytest.raises(ConcurrencyError):
        async with storage.unit_of_work() as uow:
            stale.state = ConversationState(step="lost")
            entries = _lines(stale, "lost")
            await uow.commit_turn(stale, entries, scope="c1", message_id="m2", reply={"r": 2})
    assert await _stored(storage, "m2") == before


async def test_a_message_id_already_answered_is_refused_and_nothing_is_written(
    any_storage: Storage,
) -> None:
    storage = _unlocked(any_storage)
    await _new(storage)
    await _turn(storage, "first", "m1")
    before = await _stored(storage, "m1")
    with pytest.raises(DuplicateError):
        async with storage.unit_of_work() as uow:
            record, prior = await uow.conversations.read_for_turn("c1", scope="c1", message_id="m1")
            assert record is not None and prior == {"said": "first", "é": "✓"}  # the replay
            entries = _lines(record, "again")
            await uow.commit_turn(record, entries, scope="c1", message_id="m1", reply={"r": 0})
    assert await _stored(storage, "m1") == before


async def test_commit_new_stores_the_conversation_and_its_lines_once(
    any_storage: Storage,
) -> None:
    storage = _unlocked(any_storage)
    created = await _new(storage)
    record, _, lines = await _stored(storage)
    assert record.state == STATE and record.token_hash == created.token_hash
    assert record.revision == 0 and record.transcript_seq == 3
    assert record.created_at == NOW and record.updated_at == NOW
    assert lines[1] == (2, "bot", {"text": "ответ welcome ✓", "choices": []})
    again = _record()
    with pytest.raises(DuplicateError):
        async with storage.unit_of_work() as uow:
            again.transcript_seq = 10
            await uow.commit_new(again, _lines(again, "twice"))
    assert await _stored(storage) == (record, None, lines)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_keeps_json_as_text(storage: SqlStorage) -> None:
    """The stored JSON (now orjson's) stays text in SQLite's columns."""
    assert storage.backend == "sqlite"
    await _new(storage)
    await _turn(storage, "first", "m1")
    async with storage.unit_of_work() as uow:
        assert isinstance(uow, SqlUnitOfWork) and uow._db is not None
        kinds = await uow._db.run_sqlite(
            lambda connection: connection.execute(
                "SELECT (SELECT typeof(state) FROM conversations),"
                " (SELECT group_concat(DISTINCT typeof(payload)) FROM transcript_entries),"
                " (SELECT typeof(reply) FROM inbound_messages)"
            ).fetchone()
        )
    assert tuple(kinds) == ("text", "text", "text")


# ---------------------------------------------------------------------- PostgreSQL, unlocked


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_reads_without_the_lock_outside_a_transaction(
    storage: SqlStorage,
) -> None:
    """The unlocked read does not wait for a turn holding the conversation's lock, and a turn
    committed between the read and the write makes the write fail (OvertakenError) having
    written nothing; run again, it applies on top."""
    storage.unlocked_turns = True
    await _new(storage)
    async with storage.unit_of_work() as holder:
        await holder.conversations.get_for_turn("c1", scope="c1", message_id=None)  # locked
        async with storage.unit_of_work() as uow:
            read = uow.conversations.read_for_turn("c1", scope="c1", message_id="m1")
            record, _ = await asyncio.wait_for(read, 2)
            assert record is not None
            await uow.commit()
    async with storage.unit_of_work() as late:
        record, _ = await late.conversations.read_for_turn("c1", scope="c1", message_id="m2")
        assert record is not None
        await _turn(storage, "first", "m1")
        record.state = ConversationState(step="overtaken")
        entries = _lines(record, "overtaken")
        with pytest.raises(OvertakenError):
            await late.commit_turn(record, entries, scope="c1", message_id="m2", reply={"r": 2})
    stored, prior, lines = await _stored(storage, "m2")
    assert prior is None and stored.revision == 1
    assert stored.state == ConversationState(step="first", answers={"said": "first"})
    assert [seq for seq, _, _ in lines] == [1, 2, 3, 4]
    await _turn(storage, "again", "m2")
    stored, prior, lines = await _stored(storage, "m2")
    assert stored.revision == 2 and prior == {"said": "again", "é": "✓"} and len(lines) == 6


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_a_reply_kept_meanwhile_undoes_the_whole_write(
    storage: SqlStorage, database_url: str
) -> None:
    """Another writer keeps a reply for the same message id while the turn's write runs (its
    insert waits for that writer's commit): the write fails as a whole, DuplicateError, and
    its update of the conversation is not left committed without its reply."""
    storage.unlocked_turns = True
    await _new(storage)
    url = make_url(database_url)
    admin = await asyncpg.connect(
        url.set(drivername="postgresql", query={}).render_as_string(hide_password=False),
        server_settings={"search_path": url.query["search_path"]},  # type: ignore[dict-item]
    )
    try:
        other = admin.transaction()
        await other.start()
        await admin.execute(
            "INSERT INTO inbound_messages (scope, message_id, reply, created_at, conversation_id)"
            " VALUES ('c1', 'm1', '{\"other\": true}', now(), 'c1')"
        )
        write = asyncio.ensure_future(_turn(storage, "first", "m1"))
        await asyncio.sleep(0.3)
        assert not write.done()  # waiting for the other writer's key
        await other.commit()
        with pytest.raises(DuplicateError):
            await write
    finally:
        await admin.close()
    stored, prior, lines = await _stored(storage, "m1")
    assert stored.revision == 0 and stored.state == STATE and len(lines) == 2
    assert prior == {"other": True}


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_a_turn_that_wrote_more_commits_it_all_in_its_transaction(
    storage: SqlStorage,
) -> None:
    """After the unlocked read, a turn that writes something else (here the inbound log
    directly) has begun a transaction: commit_turn saves within it and commits it all, or,
    overtaken, none of it."""
    storage.unlocked_turns = True
    await _new(storage)
    async with storage.unit_of_work() as uow:
        record, _ = await uow.conversations.read_for_turn("c1", scope="c1", message_id="m1")
        assert record is not None
        await uow.inbound.put("elsewhere", "x1", {"kept": 1})
        await uow.commit_turn(record, _lines(record, "a"), scope="c1", message_id="m1", reply={})
    async with storage.unit_of_work() as uow:
        record, _ = await uow.conversations.read_for_turn("c1", scope="c1", message_id="m2")
        assert record is not None
        await uow.inbound.put("elsewhere", "x2", {"kept": 2})
        await _turn(storage, "b", "m3")
        with pytest.raises(OvertakenError):
            await uow.commit_turn(record, [], scope="c1", message_id="m2", reply={})
    async with storage.unit_of_work() as uow:
        assert await uow.inbound.get("elsewhere", "x1") == {"kept": 1}
        assert await uow.inbound.get("elsewhere", "x2") is None
    stored, _, lines = await _stored(storage)
    assert stored.revision == 2 and len(lines) == 6


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_dropped_sessions_on_the_untransacted_paths(
    database_url: str, terminate_sessions: Callable[[str], Awaitable[int]]
) -> None:
    """A pooled connection the server dropped while idle is replaced before the unlocked read
    or a new conversation's write. A drop between the read and the write loses nothing
    either: the read handed its connection back (`Db.hand_back`), and the write goes in a
    batch, which replaces a dead connection before it sends anything. (A drop under the
    write itself is a StorageError: tests/storage/test_pg_group_commit.py.)"""
    name = f"intake-untransacted-{id(database_url)}"
    url = f"{database_url}&application_name={name}"
    await upgrade(url)
    storage = await create_storage(url)
    storage.unlocked_turns = True
    try:
        await _new(storage)
        assert await terminate_sessions(name) >= 1
        await asyncio.sleep(0.1)
        await _turn(storage, "first", "m1")  # its read on a fresh connection
        assert await terminate_sessions(name) >= 1
        await asyncio.sleep(0.1)
        await _new(storage, "c2")  # its write on a fresh connection
        async with storage.unit_of_work() as uow:
            record, _ = await uow.conversations.read_for_turn("c1", scope="c1", message_id="m2")
            assert record is not None
            assert uow.transaction is None  # handed back
            assert await terminate_sessions(name) >= 1
            await asyncio.sleep(0.1)
            await uow.commit_turn(
                record, _lines(record, "kept"), scope="c1", message_id="m2", reply={"n": 2}
            )
        stored, prior, lines = await _stored(storage, "m2")
        assert stored.revision == 2 and prior == {"n": 2} and len(lines) == 6
    finally:
        await storage.close()


# ---------------------------------------------------------------------- SQLite, pages written


#: What the conversations table's indexes are called (storage.models.ConversationRow).
CONVERSATION_INDEXES = {
    "ix_conversations_channel_key",
    "uq_conversations_active_channel_key",
    "ix_conversations_untouched",
    "ix_conversations_finished",
}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_a_turn_in_the_middle_writes_no_page_of_the_conversation_indexes(
    storage: SqlStorage, database_url: str
) -> None:
    """A turn that leaves the conversation active at its address changes nothing its indexes
    hold, and its commit writes none of their pages (SQLite rewrites an index entry whenever an
    UPDATE sets a column of it, changed or not: a 4 KiB page more in the WAL each). The first
    turn (which clears `untouched_at`) and the last (which sets `finished_at`) still do."""
    database = Path(make_url(database_url).database or "")
    record = _record("chat-c1")
    record.channel, record.channel_key = "telegram", "telegram:1:42"
    async with storage.unit_of_work() as uow:
        await uow.commit_new(record, _lines(record, "welcome"))

    async def turn(step: str, minute: int, status: str = "active") -> set[str]:
        async with storage.unit_of_work() as uow:
            record, _ = await uow.conversations.read_for_turn(
                "chat-c1", scope="chat", message_id=step
            )
            assert record is not None
            record.state = ConversationState(step=step, status=status)  # type: ignore[arg-type]
            record.updated_at = NOW + timedelta(minutes=minute)
            await uow.commit_turn(
                record, _lines(record, step), scope="chat", message_id=step, reply={"r": step}
            )
        return last_commit_pages(database)

    first = await turn("first", 1)
    assert "ix_conversations_untouched" in first and "conversations" in first
    for minute, step in enumerate(("second", "third"), start=2):
        middle = await turn(step, minute)
        assert "conversations" in middle and "transcript_entries" in middle
        assert not middle & CONVERSATION_INDEXES, middle
    last = await turn("done", 4, status="submitted")
    assert {"ix_conversations_finished", "uq_conversations_active_channel_key"} <= last

    async with storage.unit_of_work() as uow:
        rows = await uow._db.run_sqlite(  # type: ignore[attr-defined]
            lambda connection: connection.execute(
                "SELECT status, channel_key, revision, transcript_seq, untouched_at,"
                " finished_at IS NOT NULL FROM conversations"
            ).fetchall()
        )
        stored, _ = await uow.conversations.get_for_turn("chat-c1", scope="chat", message_id=None)
    assert [tuple(row) for row in rows] == [("submitted", "telegram:1:42", 4, 11, None, 1)]
    assert stored is not None and stored.state.step == "done"
    assert stored.updated_at == NOW + timedelta(minutes=4)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_a_message_without_a_key_writes_no_page_of_the_idempotency_index(
    storage: SqlStorage, database_url: str
) -> None:
    """A Telegram reply (no idempotency key) is not in `uq_outbox_idempotency_key` (migration
    0011), so its commit does not write a page of it; a message with a key does."""
    database = Path(make_url(database_url).database or "")

    async def add(key: str | None) -> set[str]:
        async with storage.unit_of_work() as uow:
            await uow.outbox.add(
                [OutboxMessage("telegram.send", "chat", {"r": 1}, idempotency_key=key)]
            )
            await uow.commit()
        return last_commit_pages(database)

    await add(None)  # the table's first pages
    unkeyed = await add(None)
    assert "outbox" in unkeyed and "uq_outbox_idempotency_key" not in unkeyed, unkeyed
    assert "uq_outbox_idempotency_key" in await add("r1:email")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_a_web_turn_writes_no_page_of_the_replies_conversation_index(
    storage: SqlStorage, database_url: str
) -> None:
    """A web turn keeps its reply under the conversation's own id as scope, which erasure
    reads by the primary key: the conversation index holds only a chat's replies (migration
    0012), and the web turn's commit writes no page of it. A chat's turn does."""
    database = Path(make_url(database_url).database or "")
    await _new(storage)
    await _turn(storage, "first", "m1")
    web = last_commit_pages(database)
    assert "sqlite_autoindex_inbound_messages_1" in web, web
    assert "ix_inbound_messages_conversation_id" not in web, web
    async with storage.unit_of_work() as uow:
        record, _ = await uow.conversations.read_for_turn("c1", scope="chat", message_id="m2")
        assert record is not None
        await uow.commit_turn(
            record, _lines(record, "chat"), scope="chat", message_id="m2", reply={"r": 2}
        )
    assert "ix_inbound_messages_conversation_id" in last_commit_pages(database)
