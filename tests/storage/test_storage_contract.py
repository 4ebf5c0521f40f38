"""One contract suite, typed on `bot.ports.Storage`, run over every implementation: in memory,
SQLite and PostgreSQL.

After aiogram's tests/test_fsm/storage/test_storages.py: the `storage` fixture is parametrized,
so each test states a promise of `bot.ports` that every implementation keeps. What only the
SQL implementation promises (locks across connections, migrations, timeouts) is tested in the
other files of this folder.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import pytest

from bot.engine.types import ConversationState
from bot.ports import (
    ChatMessageIds,
    ConcurrencyError,
    ConversationRecord,
    DirectoryLocation,
    DuplicateError,
    OutboxMessage,
    Storage,
    StorageError,
    StoredReport,
    TranscriptEntry,
    UnitOfWork,
)


@pytest.fixture
def storage(any_storage: Storage) -> Storage:
    return any_storage


class Clock(Protocol):
    """The `clock` fixture: real time plus an offset the test advances."""

    def advance(self, seconds: float) -> None: ...


def _now() -> datetime:
    return datetime.now(UTC)


def conversation(
    conversation_id: str = "c1",
    *,
    channel: str = "telegram",
    channel_key: str | None = "chat-1",
    status: str = "active",
    created_at: datetime | None = None,
) -> ConversationRecord:
    at = created_at or _now()
    return ConversationRecord(
        id=conversation_id,
        channel=channel,  # type: ignore[arg-type]
        state=ConversationState(step="start", answers={"n": 0}, status=status),  # type: ignore[arg-type]
        created_at=at,
        updated_at=at,
        token_hash="ab" * 32,
        channel_key=channel_key,
    )


def report(
    reference: str, priority: str, created_at: datetime, conversation_id: str = ""
) -> StoredReport:
    return StoredReport(
        reference=reference,
        conversation_id=conversation_id or f"conv-{reference}",
        created_at=created_at,
        channel="web",
        locale="en",
        priority=priority,  # type: ignore[arg-type]
        data={"what_happened": "text", "urgent": priority == "urgent"},
    )


def location(location_id: str, name: str = "Rose House", **fields: object) -> DirectoryLocation:
    return DirectoryLocation(location_id=location_id, name=name, **fields)  # type: ignore[arg-type]


async def add_outbox(storage: Storage, *messages: tuple[str, str]) -> list[int]:
    """Add (ordering_key, label) messages to topic "send"; returns their ids."""
    batch = [OutboxMessage("send", key, {"label": label}) for key, label in messages]
    async with storage.unit_of_work() as uow:
        await uow.outbox.add(batch)
        await uow.commit()
    return [message.id for message in batch if message.id is not None]


async def claim_labels(storage: Storage, limit: int = 10, lease: float = 60) -> list[str]:
    async with storage.unit_of_work() as uow:
        claimed = await uow.outbox.claim("send", limit=limit, lease_seconds=lease)
        await uow.commit()
    return [message.payload["label"] for message in claimed]


async def locked(uow: UnitOfWork, conversation_id: str) -> ConversationRecord | None:
    """The conversation, locked for this unit of work, read as a turn without a message id
    reads it."""
    record, _ = await uow.conversations.get_for_turn(
        conversation_id, scope=conversation_id, message_id=None
    )
    return record


async def kept_reply(uow: UnitOfWork, scope: str, message_id: str) -> dict[str, Any] | None:
    """The reply kept for (scope, message_id), read as a chat's first message reads it (the
    port has no other read of the log: the service only ever reads it with its turn)."""
    _, reply = await uow.conversations.find_active_for_turn(
        "telegram", "no-such-chat", scope=scope, message_id=message_id
    )
    return reply


class TestStorageContract:
    # -- conversations -------------------------------------------------------------------

    async def test_conversation_round_trip(self, storage: Storage) -> None:
        record = conversation()
        record.state.scratch = {"matches": [{"id": "1-1", "name": "Rosé"}]}
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(record)
            await uow.commit()
        async with storage.unit_of_work() as uow:
            loaded = await uow.conversations.get("c1")
            missing = await uow.conversations.get("nope")
        assert missing is None
        assert loaded is not None
        assert loaded.state == record.state
        assert loaded.channel == "telegram"
        assert loaded.channel_key == "chat-1"
        assert loaded.token_hash == "ab" * 32
        assert loaded.revision == 0
        assert loaded.created_at == record.created_at
        assert loaded.created_at.tzinfo is not None
        assert loaded.created_at.utcoffset() == timedelta(0)

    async def test_conversation_add_twice_is_a_duplicate(self, storage: Storage) -> None:
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(conversation())
            with pytest.raises(DuplicateError):
                await uow.conversations.add(conversation())
            await uow.commit()

    async def test_update_increments_revision_and_rejects_stale_writes(
        self, storage: Storage
    ) -> None:
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(conversation())
            await uow.commit()
        async with storage.unit_of_work() as uow:
            first = await uow.conversations.get("c1")
        async with storage.unit_of_work() as uow:
            second = await uow.conversations.get("c1")
        assert first is not None and second is not None

        async with storage.unit_of_work() as uow:
            first.state.step = "experience"
            await uow.conversations.update(first)
            await uow.commit()
        assert first.revision == 1

        async with storage.unit_of_work() as uow:
            second.state.step = "other"
            with pytest.raises(ConcurrencyError):
                await uow.conversations.update(second)
        assert second.revision == 0

        async with storage.unit_of_work() as uow:
            loaded = await uow.conversations.get("c1")
        assert loaded is not None
        assert (loaded.state.step, loaded.revision) == ("experience", 1)

    async def test_update_saves_status_reference_and_channel_key(self, storage: Storage) -> None:
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(conversation())
            await uow.commit()
        async with storage.unit_of_work() as uow:
            record = await uow.conversations.find_active("telegram", "chat-1")
            assert record is not None
            record.state.status = "submitted"
            record.reference = "ABC-123"
            record.channel_key = "chat-2"
            await uow.conversations.update(record)
            await uow.commit()
        async with storage.unit_of_work() as uow:
            assert await uow.conversations.find_active("telegram", "chat-1") is None
            assert await uow.conversations.find_active("telegram", "chat-2") is None
            loaded = await uow.conversations.get("c1")
        assert loaded is not None
        assert (loaded.state.status, loaded.reference, loaded.channel_key) == (
            "submitted",
            "ABC-123",
            "chat-2",
        )

    async def test_find_active_returns_the_newest_active_one(self, storage: Storage) -> None:
        base = _now()
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(conversation("old", status="ended", created_at=base))
            await uow.conversations.add(conversation("new", created_at=base + timedelta(seconds=1)))
            await uow.conversations.add(
                conversation("done", status="submitted", created_at=base + timedelta(seconds=2))
            )
            await uow.conversations.add(
                conversation("web", channel="web", created_at=base + timedelta(seconds=3))
            )
            await uow.commit()
        async with storage.unit_of_work() as uow:
            found = await uow.conversations.find_active("telegram", "chat-1")
            assert found is not None and found.id == "new"
            assert await uow.conversations.find_active("telegram", "chat-9") is None
            locked = await uow.conversations.find_active("web", "chat-1")
            assert locked is not None and locked.id == "web"

    async def test_list_idle_finds_old_active_conversations_only(self, storage: Storage) -> None:
        base = _now()
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(
                conversation("stale", channel_key=None, created_at=base - timedelta(days=40))
            )
            await uow.conversations.add(
                conversation("older", channel_key=None, created_at=base - timedelta(days=50))
            )
            await uow.conversations.add(
                conversation("fresh", channel_key=None, created_at=base - timedelta(days=1))
            )
            await uow.conversations.add(
                conversation(
                    "sent",
                    channel_key=None,
                    status="submitted",
                    created_at=base - timedelta(days=90),
                )
            )
            await uow.commit()
        async with storage.unit_of_work() as uow:
            idle = await uow.conversations.list_idle(base - timedelta(days=30), limit=10)
            assert [r.id for r in idle] == ["older", "stale"]
            assert [
                r.id for r in await uow.conversations.list_idle(base - timedelta(days=30), limit=1)
            ] == ["older"]

    async def test_one_active_conversation_per_channel_key(self, storage: Storage) -> None:
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(conversation("first"))
            with pytest.raises(DuplicateError):
                await uow.conversations.add(conversation("second"))
            # Other chats, other channels, finished conversations and keyless ones are free.
            await uow.conversations.add(conversation("other-chat", channel_key="chat-2"))
            await uow.conversations.add(conversation("web", channel="web"))
            await uow.conversations.add(conversation("done", status="submitted"))
            await uow.conversations.add(conversation("k1", channel="web", channel_key=None))
            await uow.conversations.add(conversation("k2", channel="web", channel_key=None))
            await uow.commit()
        async with storage.unit_of_work() as uow:
            found = await uow.conversations.find_active("telegram", "chat-1")
            assert found is not None and found.id == "first"

    async def test_two_first_messages_at_once_open_one_conversation(self, storage: Storage) -> None:
        """Two workers open a conversation for one chat at the same moment: one wins; the
        other's insert waits for it and then conflicts (its turn is retried by the service)."""

        async def open_one(conversation_id: str) -> None:
            async with storage.unit_of_work() as uow:
                await uow.conversations.add(conversation(conversation_id))
                await asyncio.sleep(0.05)
                await uow.commit()

        results = await asyncio.gather(open_one("a"), open_one("b"), return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["DuplicateError", "NoneType"]

    async def test_the_turn_read_serializes_turns(self, storage: Storage) -> None:
        """Concurrent turns of one conversation neither lose updates nor conflict."""
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(conversation())
            await uow.commit()

        async def turn() -> None:
            async with storage.unit_of_work() as uow:
                record = await locked(uow, "c1")
                assert record is not None
                await asyncio.sleep(0.01)  # let the other turns pile up on the lock
                record.state.answers["n"] += 1
                await uow.conversations.update(record)
                await uow.commit()

        await asyncio.gather(*(turn() for _ in range(8)))
        async with storage.unit_of_work() as uow:
            record = await uow.conversations.get("c1")
        assert record is not None
        assert (record.state.answers["n"], record.revision) == (8, 8)

    # -- the turn's read and write --------------------------------------------------------

    async def test_transcript_seq_is_stored_with_the_conversation(self, storage: Storage) -> None:
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(conversation())
            await uow.commit()
        async with storage.unit_of_work() as uow:
            record = await locked(uow, "c1")
            assert record is not None and record.transcript_seq == 1
            record.transcript_seq = 7
            await uow.conversations.update(record)
            await uow.commit()
        async with storage.unit_of_work() as uow:
            record, _ = await uow.conversations.get_for_turn("c1", scope="c1", message_id="m")
        assert record is not None and (record.transcript_seq, record.revision) == (7, 1)

    async def test_get_for_turn_returns_the_prior_reply(self, storage: Storage) -> None:
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(conversation())
            await uow.inbound.put("c1", "m1", {"step": "welcome"})
            await uow.inbound.put("other", "m2", {"step": "elsewhere"})
            await uow.commit()
        async with storage.unit_of_work() as uow:
            record, prior = await uow.conversations.get_for_turn("c1", scope="c1", message_id="m1")
            assert record is not None and record.id == "c1"
            assert record.state == conversation().state
            assert prior == {"step": "welcome"}
            # Another scope's message id, an unknown one, or none at all: no prior reply.
            assert (await uow.conversations.get_for_turn("c1", scope="c1", message_id="m2"))[
                1
            ] is None
            record, prior = await uow.conversations.get_for_turn("c1", scope="c1", message_id=None)
            assert record is not None and prior is None
            assert await uow.conversations.get_for_turn("nope", scope="nope", message_id="m1") == (
                None,
                None,
            )

    async def test_the_turn_read_continues_after_lines_an_older_worker_wrote(
        self, storage: Storage
    ) -> None:
        """During a rolling upgrade, workers from before migration 0003 append transcript lines
        without advancing the conversation's counter; new workers must not reuse their seqs."""
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(conversation())
            await uow.transcripts.append(
                "c1", [TranscriptEntry(n, "bot", {"text": str(n)}, _now()) for n in (1, 2, 3)]
            )
            await uow.commit()
        async with storage.unit_of_work() as uow:
            for message_id in ("m1", None):
                record, _ = await uow.conversations.get_for_turn(
                    "c1", scope="c1", message_id=message_id
                )
                assert record is not None and record.transcript_seq == 4
            record = await locked(uow, "c1")
            assert record is not None and record.transcript_seq == 4
            found, _ = await uow.conversations.find_active_for_turn(
                "telegram", "chat-1", scope="telegram", message_id="u9"
            )
            assert found is not None and found.transcript_seq == 4

    async def test_find_active_for_turn_returns_the_prior_reply(self, storage: Storage) -> None:
        async with storage.unit_of_work() as uow:
            await uow.inbound.put("telegram", "u1", {"step": "welcome"})
            await uow.commit()
        async with storage.unit_of_work() as uow:
            # No conversation yet (a chat's first message), and a message seen before or not.
            assert await uow.conversations.find_active_for_turn(
                "telegram", "chat-1", scope="telegram", message_id="u1"
            ) == (None, {"step": "welcome"})
            assert await uow.conversations.find_active_for_turn(
                "telegram", "chat-1", scope="telegram", message_id="u2"
            ) == (None, None)
            await uow.conversations.add(conversation())
            await uow.conversations.add(conversation("old", status="ended"))
            record, prior = await uow.conversations.find_active_for_turn(
                "telegram", "chat-1", scope="telegram", message_id="u1"
            )
            assert record is not None and record.id == "c1" and prior == {"step": "welcome"}
            record, prior = await uow.conversations.find_active_for_turn(
                "telegram", "chat-1", scope="telegram", message_id="u2"
            )
            assert record is not None and record.id == "c1" and prior is None

    async def test_get_for_turn_holds_the_lock(self, storage: Storage) -> None:
        """A second turn of the conversation waits until the first one's unit of work ends
        (the row lock on PostgreSQL; the single writer on SQLite)."""
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(conversation())
            await uow.commit()
        second_read = asyncio.Event()

        async def second() -> int:
            async with storage.unit_of_work() as uow:
                record, _ = await uow.conversations.get_for_turn("c1", scope="c1", message_id="m2")
                second_read.set()
                assert record is not None
                return record.revision

        async with storage.unit_of_work() as uow:
            record, _ = await uow.conversations.get_for_turn("c1", scope="c1", message_id="m1")
            assert record is not None
            waiting = asyncio.create_task(second())
            await asyncio.sleep(0.3)
            assert not second_read.is_set()
            await uow.save_turn(record, [], scope="c1", message_id="m1", reply={"n": 1})
            await uow.commit()
        # The waiting turn reads the state its predecessor committed.
        assert await asyncio.wait_for(waiting, 10) == 1

    async def test_save_turn_saves_state_transcript_and_reply(self, storage: Storage) -> None:
        at = _now()
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(conversation())
            await uow.commit()
        async with storage.unit_of_work() as uow:
            record, prior = await uow.conversations.get_for_turn("c1", scope="c1", message_id="m1")
            assert record is not None and prior is None
            record.state.step = "experience"
            record.reference = "ABC-123"
            record.transcript_seq = 3
            lines = [
                TranscriptEntry(1, "user", {"text": "Rosé", "nested": {"a": [1, 2]}}, at),
                TranscriptEntry(2, "bot", {"text": "Thanks"}, at),
            ]
            await uow.save_turn(record, lines, scope="c1", message_id="m1", reply={"r": 1})
            assert record.revision == 1
            await uow.commit()
        async with storage.unit_of_work() as uow:
            record, prior = await uow.conversations.get_for_turn("c1", scope="c1", message_id="m1")
            assert prior == {"r": 1}
            assert record is not None
            assert (record.state.step, record.reference, record.revision) == (
                "experience",
                "ABC-123",
                1,
            )
            assert record.transcript_seq == 3
            # A message without an id: no reply is kept.
            record.transcript_seq = 4
            await uow.save_turn(
                record,
                [TranscriptEntry(3, "bot", {"text": "More"}, at)],
                scope="c1",
                message_id=None,
                reply=None,
            )
            await uow.commit()
        async with storage.unit_of_work() as uow:
            entries = await uow.transcripts.list("c1")
            record = await uow.conversations.get("c1")
        assert [(e.seq, e.role, e.payload) for e in entries] == [
            (1, "user", {"text": "Rosé", "nested": {"a": [1, 2]}}),
            (2, "bot", {"text": "Thanks"}),
            (3, "bot", {"text": "More"}),
        ]
        assert entries[0].created_at == at and entries[0].created_at.tzinfo is not None
        assert record is not None and (record.revision, record.transcript_seq) == (2, 4)

    async def test_save_turn_with_a_stale_revision_writes_nothing(self, storage: Storage) -> None:
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(conversation())
            await uow.commit()
        async with storage.unit_of_work() as uow:
            stale = await uow.conversations.get("c1")
        async with storage.unit_of_work() as uow:
            fresh = await locked(uow, "c1")
            assert fresh is not None
            await uow.conversations.update(fresh)
            await uow.commit()
        assert stale is not None
        stale.state.step = "lost"
        line = TranscriptEntry(1, "bot", {"text": "lost"}, _now())
        for message_id in ("m1", None):
            async with storage.unit_of_work() as uow:
                with pytest.raises(ConcurrencyError):
                    await uow.save_turn(
                        stale,
                        [line],
                        scope="c1",
                        message_id=message_id,
                        reply=None if message_id is None else {"r": 1},
                    )
                assert stale.revision == 0
                # Nothing was written, and the transaction is still usable.
                assert await uow.transcripts.list("c1") == []
                assert await kept_reply(uow, "c1", "m1") is None
                loaded = await uow.conversations.get("c1")
                assert loaded is not None and loaded.state.step == "start"
                await uow.commit()

    async def test_save_turn_for_a_handled_message_writes_nothing(self, storage: Storage) -> None:
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(conversation())
            await uow.inbound.put("c1", "m1", {"first": True})
            await uow.commit()
        async with storage.unit_of_work() as uow:
            record = await locked(uow, "c1")
            assert record is not None
            record.state.step = "again"
            record.transcript_seq = 2
            with pytest.raises(DuplicateError):
                await uow.save_turn(
                    record,
                    [TranscriptEntry(1, "bot", {"text": "again"}, _now())],
                    scope="c1",
                    message_id="m1",
                    reply={"first": False},
                )
            assert record.revision == 0
            assert await uow.transcripts.list("c1") == []
            assert await kept_reply(uow, "c1", "m1") == {"first": True}
            loaded = await uow.conversations.get("c1")
            assert loaded is not None
            assert (loaded.state.step, loaded.revision, loaded.transcript_seq) == ("start", 0, 1)
            await uow.commit()

    async def test_the_same_message_twice_at_once_is_applied_once(self, storage: Storage) -> None:
        """Two workers get one message id at the same moment. The second waits for the lock;
        then it either sees the reply (SQLite) or its write refuses with DuplicateError
        (PostgreSQL: its read's snapshot predates the first commit); run again, it replays."""
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(conversation())
            await uow.commit()

        async def turn(label: str) -> str:
            async with storage.unit_of_work() as uow:
                record, prior = await uow.conversations.get_for_turn(
                    "c1", scope="c1", message_id="same"
                )
                assert record is not None
                if prior is not None:
                    return "replayed"
                await asyncio.sleep(0.05)  # let the other one pile up on the lock
                record.transcript_seq += 1
                line = TranscriptEntry(record.transcript_seq - 1, "bot", {"by": label}, _now())
                await uow.save_turn(
                    record, [line], scope="c1", message_id="same", reply={"by": label}
                )
                await uow.commit()
                return "applied"

        results = await asyncio.gather(turn("a"), turn("b"), return_exceptions=True)
        outcomes = sorted(r if isinstance(r, str) else type(r).__name__ for r in results)
        assert outcomes in (["DuplicateError", "applied"], ["applied", "replayed"])
        assert await turn("c") == "replayed"
        async with storage.unit_of_work() as uow:
            entries = await uow.transcripts.list("c1")
            record = await uow.conversations.get("c1")
        assert len(entries) == 1 and record is not None and record.revision == 1

    async def test_turns_with_get_for_turn_and_save_turn_serialize(self, storage: Storage) -> None:
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(conversation())
            await uow.commit()

        async def turn(number: int) -> None:
            async with storage.unit_of_work() as uow:
                record, prior = await uow.conversations.get_for_turn(
                    "c1", scope="c1", message_id=f"m{number}"
                )
                assert record is not None and prior is None
                await asyncio.sleep(0.01)
                record.state.answers["n"] += 1
                seq = record.transcript_seq
                record.transcript_seq += 2
                lines = [
                    TranscriptEntry(seq, "user", {"n": number}, _now()),
                    TranscriptEntry(seq + 1, "bot", {"n": number}, _now()),
                ]
                await uow.save_turn(
                    record, lines, scope="c1", message_id=f"m{number}", reply={"n": number}
                )
                await uow.commit()

        await asyncio.gather(*(turn(number) for number in range(8)))
        async with storage.unit_of_work() as uow:
            record = await uow.conversations.get("c1")
            entries = await uow.transcripts.list("c1")
        assert record is not None
        assert (record.state.answers["n"], record.revision, record.transcript_seq) == (8, 8, 17)
        assert [e.seq for e in entries] == list(range(1, 17))

    # -- units of work -------------------------------------------------------------------

    async def test_leaving_without_commit_rolls_back(self, storage: Storage) -> None:
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(conversation())
            await uow.inbound.put("telegram", "1", {"reply": 1})
        with pytest.raises(RuntimeError):
            async with storage.unit_of_work() as uow:
                await uow.conversations.add(conversation("c2"))
                raise RuntimeError("the engine crashed")
        async with storage.unit_of_work() as uow:
            assert await uow.conversations.get("c1") is None
            assert await uow.conversations.get("c2") is None
            assert await kept_reply(uow, "telegram", "1") is None

    async def test_a_finished_unit_of_work_cannot_be_used(self, storage: Storage) -> None:
        async with storage.unit_of_work() as uow:
            await uow.commit()
            with pytest.raises(StorageError):
                await uow.conversations.get("c1")
            with pytest.raises(StorageError):
                await uow.commit()

    async def test_ping(self, storage: Storage) -> None:
        await storage.ping()

    # -- inbound log ---------------------------------------------------------------------

    async def test_inbound_put_get_and_duplicate(self, storage: Storage) -> None:
        async with storage.unit_of_work() as uow:
            assert await kept_reply(uow, "telegram", "42") is None
            await uow.inbound.put("telegram", "42", {"messages": ["hello"]})
            await uow.inbound.put("web", "42", {"messages": ["other scope"]})
            await uow.commit()
        async with storage.unit_of_work() as uow:
            assert await kept_reply(uow, "telegram", "42") == {"messages": ["hello"]}
            with pytest.raises(DuplicateError):
                await uow.inbound.put("telegram", "42", {"messages": ["again"]})
            # The transaction is still usable after the duplicate (no aborted transaction).
            await uow.inbound.put("telegram", "43", {"messages": []})
            await uow.commit()
        async with storage.unit_of_work() as uow:
            assert await kept_reply(uow, "telegram", "42") == {"messages": ["hello"]}
            assert await kept_reply(uow, "telegram", "43") == {"messages": []}

    # -- transcripts ---------------------------------------------------------------------

    async def test_transcript_order_and_erase(self, storage: Storage) -> None:
        at = _now()
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(conversation())
            await uow.conversations.add(conversation("c2", channel_key="chat-2"))
            await uow.transcripts.append(
                "c1",
                [
                    TranscriptEntry(2, "user", {"text": "yes"}, at),
                    TranscriptEntry(1, "bot", {"text": "Hello?"}, at),
                ],
            )
            await uow.transcripts.append("c1", [TranscriptEntry(3, "bot", {"text": "Thanks"}, at)])
            await uow.transcripts.append("c2", [TranscriptEntry(1, "bot", {"text": "Hi"}, at)])
            await uow.commit()
        async with storage.unit_of_work() as uow:
            entries = await uow.transcripts.list("c1")
            assert [(e.seq, e.role, e.payload["text"]) for e in entries] == [
                (1, "bot", "Hello?"),
                (2, "user", "yes"),
                (3, "bot", "Thanks"),
            ]
            assert entries[0].created_at == at
            with pytest.raises(DuplicateError):
                await uow.transcripts.append("c1", [TranscriptEntry(3, "user", {}, at)])
        async with storage.unit_of_work() as uow:
            await uow.transcripts.erase("c1")
            await uow.commit()
        async with storage.unit_of_work() as uow:
            assert await uow.transcripts.list("c1") == []
            assert len(await uow.transcripts.list("c2")) == 1

    async def test_delete_untouched_keeps_conversations_that_had_a_turn(
        self, storage: Storage
    ) -> None:
        old = _now() - timedelta(hours=2)
        at = _now()
        async with storage.unit_of_work() as uow:
            for name in ("empty-old", "answered-old", "empty-new"):
                created = old if name.endswith("old") else at
                await uow.conversations.add(
                    conversation(name, channel="web", channel_key=None, created_at=created)
                )
            await uow.conversations.add(conversation("tg-old", created_at=old))
            await uow.transcripts.append(
                "empty-old", [TranscriptEntry(1, "bot", {"text": "Hello"}, old)]
            )
            await uow.commit()
        async with storage.unit_of_work() as uow:
            answered = await uow.conversations.get_for_turn(
                "answered-old", scope="s", message_id=None
            )
            record = answered[0]
            assert record is not None
            record.updated_at = _now()
            await uow.conversations.update(record)
            await uow.commit()
        async with storage.unit_of_work() as uow:
            deleted = await uow.conversations.delete_untouched(
                "web", _now() - timedelta(hours=1), limit=100
            )
            await uow.commit()
        assert deleted == 1
        async with storage.unit_of_work() as uow:
            assert await uow.conversations.get("empty-old") is None
            assert await uow.transcripts.list("empty-old") == []
            for kept in ("answered-old", "empty-new", "tg-old"):
                assert await uow.conversations.get(kept) is not None

    async def test_transcript_newest_lines_within_a_size_and_erase_before(
        self, storage: Storage
    ) -> None:
        at = _now()
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(conversation())
            await uow.transcripts.append(
                "c1", [TranscriptEntry(n, "bot", {"text": "x" * 1000}, at) for n in range(1, 11)]
            )
            await uow.commit()
        async with storage.unit_of_work() as uow:
            newest = await uow.transcripts.list("c1", max_chars=3500)
            assert [e.seq for e in newest] == [8, 9, 10]  # ~1,015 characters each
            assert await uow.transcripts.list("c1", max_chars=10) == []
            assert len(await uow.transcripts.list("c1", max_chars=10**9)) == 10
            await uow.transcripts.erase("c1", before_seq=6)
            await uow.commit()
        async with storage.unit_of_work() as uow:
            assert [e.seq for e in await uow.transcripts.list("c1")] == [6, 7, 8, 9, 10]

    # -- reports -------------------------------------------------------------------------

    async def test_reports_add_get_count_and_duplicate(self, storage: Storage) -> None:
        at = _now()
        async with storage.unit_of_work() as uow:
            await uow.reports.add(report("R-1", "routine", at))
            with pytest.raises(DuplicateError):
                await uow.reports.add(report("R-1", "urgent", at, conversation_id="other"))
            # Still usable: the service retries with a fresh reference in the same turn.
            await uow.reports.add(report("R-2", "urgent", at, conversation_id="other"))
            await uow.commit()
        async with storage.unit_of_work() as uow:
            stored = await uow.reports.get("R-1")
            assert stored == report("R-1", "routine", at)
            assert await uow.reports.get("R-404") is None
            assert await uow.reports.count() == 2

    async def test_reports_list_most_urgent_then_oldest_first(self, storage: Storage) -> None:
        base = _now()
        specs = [
            ("A", "routine", 0),
            ("B", "urgent", 3),
            ("C", "urgent_review", 1),
            ("D", "urgent", 1),
            ("E", "routine", -5),
            ("F", "urgent_review", 0),
        ]
        async with storage.unit_of_work() as uow:
            for reference, priority, minutes in specs:
                await uow.reports.add(
                    report(reference, priority, base + timedelta(minutes=minutes))
                )
            await uow.commit()
        async with storage.unit_of_work() as uow:
            listed = [r.reference for r in await uow.reports.list()]
            page = [r.reference for r in await uow.reports.list(limit=2, offset=2)]
        assert listed == ["D", "B", "F", "C", "E", "A"]
        assert page == ["F", "C"]

    # -- outbox --------------------------------------------------------------------------

    async def test_outbox_keeps_order_per_key(self, storage: Storage) -> None:
        ids = await add_outbox(
            storage, ("A", "a1"), ("A", "a2"), ("B", "b1"), ("A", "a3"), ("B", "b2")
        )
        assert ids == sorted(ids) and len(set(ids)) == 5
        assert await claim_labels(storage) == ["a1", "b1"]
        assert await claim_labels(storage) == []  # both keys wait for their claimed head
        async with storage.unit_of_work() as uow:
            await uow.outbox.mark_done(ids[0])
            await uow.commit()
        assert await claim_labels(storage) == ["a2"]
        async with storage.unit_of_work() as uow:
            await uow.outbox.mark_done(ids[1])
            await uow.outbox.mark_done(ids[2])
            await uow.commit()
        assert await claim_labels(storage) == ["a3", "b2"]

    async def test_outbox_claim_respects_limit_and_topic(self, storage: Storage) -> None:
        await add_outbox(storage, ("A", "a1"), ("B", "b1"), ("C", "c1"))
        async with storage.unit_of_work() as uow:
            await uow.outbox.add([OutboxMessage("notify", "A", {"label": "n1"})])
            await uow.commit()
        assert await claim_labels(storage, limit=2) == ["a1", "b1"]
        assert await claim_labels(storage, limit=2) == ["c1"]
        async with storage.unit_of_work() as uow:
            claimed = await uow.outbox.claim("notify", limit=5, lease_seconds=30)
            await uow.commit()
        assert [m.payload for m in claimed] == [{"label": "n1"}]
        assert claimed[0].attempts == 1 and claimed[0].id is not None

    async def test_outbox_lease_expiry_redelivers(self, storage: Storage, clock: Clock) -> None:
        await add_outbox(storage, ("A", "a1"), ("A", "a2"))
        assert await claim_labels(storage, lease=30) == ["a1"]
        clock.advance(29)
        assert await claim_labels(storage) == []
        clock.advance(2)  # the worker that claimed a1 died
        async with storage.unit_of_work() as uow:
            again = await uow.outbox.claim("send", limit=10, lease_seconds=30)
            await uow.commit()
        assert [(m.payload["label"], m.attempts) for m in again] == [("a1", 2)]

    async def test_outbox_retry_later_keeps_the_key_waiting(
        self, storage: Storage, clock: Clock
    ) -> None:
        ids = await add_outbox(storage, ("A", "a1"), ("A", "a2"), ("B", "b1"))
        assert await claim_labels(storage) == ["a1", "b1"]
        async with storage.unit_of_work() as uow:
            await uow.outbox.retry_later(ids[0], delay_seconds=60, error="429 Too Many Requests")
            await uow.outbox.mark_done(ids[2])
            await uow.commit()
        assert await claim_labels(storage) == []  # a2 must not overtake a1
        clock.advance(61)
        async with storage.unit_of_work() as uow:
            again = await uow.outbox.claim("send", limit=10, lease_seconds=30)
            await uow.commit()
        assert [(m.payload["label"], m.last_error) for m in again] == [
            ("a1", "429 Too Many Requests")
        ]

    async def test_outbox_failed_message_does_not_block_its_key(self, storage: Storage) -> None:
        ids = await add_outbox(storage, ("A", "a1"), ("A", "a2"))
        assert await claim_labels(storage) == ["a1"]
        async with storage.unit_of_work() as uow:
            await uow.outbox.mark_failed(ids[0], error="403 bot was blocked")
            await uow.commit()
        assert await claim_labels(storage) == ["a2"]

    async def test_outbox_claim_is_rolled_back_with_its_unit_of_work(
        self, storage: Storage
    ) -> None:
        await add_outbox(storage, ("A", "a1"))
        async with storage.unit_of_work() as uow:
            assert len(await uow.outbox.claim("send", limit=1, lease_seconds=30)) == 1
        assert await claim_labels(storage) == ["a1"]

    async def test_outbox_add_claims_for_its_writer_unless_its_key_is_busy(
        self, storage: Storage, clock: Clock
    ) -> None:
        """A reply added already claimed is sent by its writer after commit; no dispatcher
        claims it meanwhile, and if the writer dies it is claimed again once its lease
        expires. Behind an earlier pending message of its key it is not claimed."""
        first = OutboxMessage("send", "A", {"label": "a1"})
        async with storage.unit_of_work() as uow:
            claimed = await uow.outbox.add([first], claim_for=30)
            await uow.commit()
        assert claimed == [first] and first.id is not None and first.attempts == 1
        assert await claim_labels(storage) == []
        second = OutboxMessage("send", "A", {"label": "a2"})
        other = OutboxMessage("send", "B", {"label": "b1"})
        async with storage.unit_of_work() as uow:
            claimed = await uow.outbox.add([second, other], claim_for=30)
            await uow.commit()
        assert [m.payload["label"] for m in claimed] == ["b1"]
        assert second.id is not None and second.attempts == 0
        assert await claim_labels(storage) == []  # a2 waits behind a1; b1 is its writer's
        clock.advance(31)  # the writer died before sending a1 and b1
        async with storage.unit_of_work() as uow:
            again = await uow.outbox.claim("send", limit=10, lease_seconds=30)
            await uow.outbox.mark_done(first.id)
            await uow.commit()
        assert [(m.payload["label"], m.attempts) for m in again] == [("a1", 2), ("b1", 2)]
        assert await claim_labels(storage) == ["a2"]

    async def test_outbox_add_claimed_is_rolled_back_with_its_unit_of_work(
        self, storage: Storage
    ) -> None:
        async with storage.unit_of_work() as uow:
            await uow.outbox.add([OutboxMessage("send", "A", {"label": "a1"})], claim_for=30)
        assert await claim_labels(storage) == []
        await add_outbox(storage, ("A", "a2"))
        assert await claim_labels(storage) == ["a2"]

    async def test_concurrent_claimers_never_get_the_same_message(self, storage: Storage) -> None:
        await add_outbox(storage, *[(f"k{i % 7}", f"m{i}") for i in range(60)])
        delivered: list[str] = []

        async def worker() -> None:
            for _ in range(40):
                async with storage.unit_of_work() as uow:
                    claimed = await uow.outbox.claim("send", limit=3, lease_seconds=60)
                    await asyncio.sleep(0.005)  # overlap with the other claimers
                    await uow.commit()
                if claimed:
                    async with storage.unit_of_work() as uow:
                        for message in claimed:
                            assert message.id is not None
                            delivered.append(message.payload["label"])
                            await uow.outbox.mark_done(message.id)
                        await uow.commit()
                else:
                    await asyncio.sleep(0.005)

        await asyncio.gather(*(worker() for _ in range(4)))
        assert len(delivered) == len(set(delivered)) == 60
        for key in range(7):  # each key was delivered in its own order
            of_key = [int(label[1:]) for label in delivered if int(label[1:]) % 7 == key]
            assert of_key == sorted(of_key)

    # -- erasure -------------------------------------------------------------------------

    async def _seed_words(self, storage: Storage, conversation_id: str) -> None:
        """A transcript line, a kept reply, a chat message with the words, an event without."""
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(conversation(conversation_id, channel_key=None))
            await uow.transcripts.append(
                conversation_id, [TranscriptEntry(1, "user", {"text": "typed"}, _now())]
            )
            await uow.inbound.put(
                "web", f"{conversation_id}-m1", {"said": "typed"}, conversation_id=conversation_id
            )
            await uow.outbox.add(
                [
                    OutboxMessage(
                        "telegram.send",
                        f"chat-{conversation_id}",
                        {"messages": ["typed"]},
                        conversation_id=conversation_id,
                    ),
                    OutboxMessage("report.submitted", conversation_id, {"reference": "R"}),
                ]
            )
            await uow.commit()

    async def test_erasing_a_conversation_erases_its_words_only(self, storage: Storage) -> None:
        await self._seed_words(storage, "gone")
        await self._seed_words(storage, "kept")
        async with storage.unit_of_work() as uow:
            await uow.erasure.conversation("gone", final_reply={"said": "ended"})
            await uow.commit()
        async with storage.unit_of_work() as uow:
            assert await uow.transcripts.list("gone") == []
            assert len(await uow.transcripts.list("kept")) == 1
            assert await kept_reply(uow, "web", "gone-m1") == {"said": "ended"}
            assert await kept_reply(uow, "web", "kept-m1") == {"said": "typed"}
            chats = await uow.outbox.list(topic="telegram.send")
            events = await uow.outbox.list(topic="report.submitted")
        assert [message.conversation_id for message in chats] == ["kept"]
        assert len(events) == 2

    async def test_erasure_without_a_final_reply_forgets_the_replies(
        self, storage: Storage
    ) -> None:
        await self._seed_words(storage, "gone")
        async with storage.unit_of_work() as uow:
            await uow.erasure.conversation("gone", final_reply=None)
            await uow.commit()
        async with storage.unit_of_work() as uow:
            assert await kept_reply(uow, "web", "gone-m1") is None

    # -- chat message ids (the exit word) ---------------------------------------------------

    async def test_chat_message_ids_are_taken_once_per_chat_oldest_first(
        self, storage: Storage
    ) -> None:
        async with storage.unit_of_work() as uow:
            await uow.chat_messages.add(ChatMessageIds("telegram", "7", (5, 3)), at=_now())
            await uow.chat_messages.add(ChatMessageIds("telegram", "8", (9,)), at=_now())
            await uow.chat_messages.add(ChatMessageIds("telegram", "7", (11,), "c1"), at=_now())
            await uow.commit()
        async with storage.unit_of_work() as uow:
            assert await uow.chat_messages.take("telegram", "7") == [5, 3, 11]
            await uow.commit()
        async with storage.unit_of_work() as uow:
            assert await uow.chat_messages.take("telegram", "7") == []
            assert await uow.chat_messages.take("web", "8") == []
            assert await uow.chat_messages.take("telegram", "8") == [9]

    async def test_chat_message_ids_go_with_their_conversation_and_after_48_hours(
        self, storage: Storage
    ) -> None:
        old = _now() - timedelta(hours=49)
        async with storage.unit_of_work() as uow:
            await uow.chat_messages.add(ChatMessageIds("telegram", "7", (1, 2), "gone"), at=_now())
            await uow.chat_messages.add(ChatMessageIds("telegram", "7", (3,), "kept"), at=_now())
            await uow.chat_messages.add(ChatMessageIds("telegram", "7", (4, 5, 6)), at=old)
            await uow.erasure.conversation("gone", final_reply=None)
            await uow.commit()
        async with storage.unit_of_work() as uow:
            assert await uow.chat_messages.purge(_now() - timedelta(hours=48), limit=2) == 2
            assert await uow.chat_messages.purge(_now() - timedelta(hours=48), limit=2) == 1
            assert await uow.chat_messages.purge(_now() - timedelta(hours=48), limit=2) == 0
            assert await uow.chat_messages.take("telegram", "7") == [3]

    async def test_expired_copies_go_after_their_time(self, storage: Storage) -> None:
        await self._seed_words(storage, "old")
        async with storage.unit_of_work() as uow:
            [chat] = await uow.outbox.list(topic="telegram.send")
            assert chat.id is not None
            await uow.outbox.mark_done(chat.id)
            await uow.commit()
        async with storage.unit_of_work() as uow:
            assert await uow.erasure.expired_copies(_now() - timedelta(hours=1), limit=10) == 0
            await uow.commit()
        async with storage.unit_of_work() as uow:
            # The kept reply and the delivered chat message; the event carries no words.
            assert await uow.erasure.expired_copies(_now() + timedelta(hours=1), limit=10) == 2
            await uow.commit()
        async with storage.unit_of_work() as uow:
            assert await kept_reply(uow, "web", "old-m1") is None
            assert await uow.outbox.list(topic="telegram.send") == []
            assert len(await uow.outbox.list(topic="report.submitted")) == 1

    # -- directory -----------------------------------------------------------------------

    async def test_directory_replace_all_counts_and_is_idempotent(self, storage: Storage) -> None:
        directory = storage.directory
        assert await directory.version() == ""
        assert await directory.all() == []
        first = [
            location(
                "1-1",
                service_types=("Care home service with nursing",),
                specialisms=("Dementia", "Older people"),
                postcode="LS1 1AA",
                last_checked=date(2024, 5, 1),
            ),
            location("1-2", name="Oak Lodge"),
            location("1-3", name="Elm Court"),
        ]
        result = await directory.replace_all(first, produced_on="2024-06-01")
        assert (result.added, result.updated, result.removed, result.total) == (3, 0, 0, 3)
        assert result.produced_on == "2024-06-01"
        version = await directory.version()
        assert version != ""
        assert await directory.get("1-1") == first[0]
        assert await directory.get("9-9") is None

        again = await directory.replace_all(first, produced_on="2024-06-01")
        assert (again.added, again.updated, again.removed, again.total) == (0, 0, 0, 3)
        assert await directory.version() == version

        second = [
            first[0],
            location("1-2", name="Oak Lodge Care Home"),
            location("1-4", name="Ash Grove"),
        ]
        changed = await directory.replace_all(second, produced_on="2024-07-01")
        assert (changed.added, changed.updated, changed.removed, changed.total) == (1, 1, 1, 3)
        assert await directory.version() != version
        assert await directory.all() == sorted(second, key=lambda loc: loc.location_id)

    async def test_directory_import_in_batches(self, storage: Storage) -> None:
        locations = [location(f"1-{i:05d}", name=f"Home {i}") for i in range(2500)]
        result = await storage.directory.replace_all(locations)
        assert (result.added, result.total) == (2500, 2500)
        renamed = [location(loc.location_id, name=loc.name + "!") for loc in locations[:1200]]
        result = await storage.directory.replace_all(renamed)
        assert (result.added, result.updated, result.removed) == (0, 1200, 1300)
        assert len(await storage.directory.all()) == 1200
