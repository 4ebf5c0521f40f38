"""The `Erasure` port on every backend: one conversation's copies go, nobody else's do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.engine.types import ConversationState
from bot.ports import ConversationRecord, OutboxMessage, TranscriptEntry
from storage.erasure import REPLIES_OF_CONVERSATION
from storage.models import inbound_messages, outbox
from storage.sqlalchemy_storage import SqlStorage


def storage_now() -> datetime:
    return datetime.now(UTC)


async def rows(storage: SqlStorage, table: Any) -> list[Any]:
    async with storage.engine.connect() as connection:
        return list((await connection.execute(select(table))).mappings())


async def seed(storage: SqlStorage, conversation_id: str) -> None:
    """A conversation with a transcript line, a kept reply, a chat message, and an event that
    carries none of its words."""
    now = storage_now()
    record = ConversationRecord(
        conversation_id, "telegram", ConversationState(step="when"), now, now, channel_key=None
    )
    async with storage.unit_of_work() as uow:
        await uow.conversations.add(record)
        await uow.transcripts.append(
            conversation_id,
            [
                TranscriptEntry(
                    1, "user", {"text": f"typed in {conversation_id}"}, record.created_at
                )
            ],
        )
        await uow.inbound.put(
            "web", f"{conversation_id}-m1", {"said": "answers"}, conversation_id=conversation_id
        )
        await uow.outbox.add(
            [
                OutboxMessage(
                    "telegram.send",
                    f"chat-{conversation_id}",
                    {"conversation_id": conversation_id, "messages": ["answers"]},
                    conversation_id=conversation_id,
                ),
                OutboxMessage("report.submitted", conversation_id, {"reference": "R"}),
            ]
        )
        await uow.commit()


async def test_erasing_a_conversation_leaves_the_others(storage: SqlStorage) -> None:
    await seed(storage, "gone")
    await seed(storage, "kept")
    async with storage.unit_of_work() as uow:
        # As a web turn keeps a reply: under the conversation's own id as its scope (so out of
        # the conversation index, migration 0012).
        for conversation_id in ("gone", "kept"):
            await uow.inbound.put(
                conversation_id, "m2", {"said": "answers"}, conversation_id=conversation_id
            )
        await uow.commit()
    async with storage.unit_of_work() as uow:
        await uow.erasure.conversation("gone", final_reply={"said": "cancelled"})
        await uow.commit()
    async with storage.unit_of_work() as uow:
        assert await uow.transcripts.list("gone") == []
        assert len(await uow.transcripts.list("kept")) == 1
        assert await uow.inbound.get("web", "gone-m1") == {"said": "cancelled"}
        assert await uow.inbound.get("gone", "m2") == {"said": "cancelled"}
        assert await uow.inbound.get("web", "kept-m1") == {"said": "answers"}
        assert await uow.inbound.get("kept", "m2") == {"said": "answers"}
    assert sorted((r["topic"], r["conversation_id"]) for r in await rows(storage, outbox)) == [
        ("report.submitted", None),
        ("report.submitted", None),
        ("telegram.send", "kept"),
    ]
    async with storage.unit_of_work() as uow:
        await uow.erasure.conversation("kept", final_reply=None)
        await uow.commit()
    assert sorted((r["scope"], r["message_id"]) for r in await rows(storage, inbound_messages)) == [
        ("gone", "m2"),
        ("web", "gone-m1"),
    ]


async def test_erasure_is_rolled_back_with_its_unit_of_work(storage: SqlStorage) -> None:
    await seed(storage, "c1")
    async with storage.unit_of_work() as uow:
        await uow.erasure.conversation("c1", final_reply=None)
    async with storage.unit_of_work() as uow:
        assert await uow.inbound.get("web", "c1-m1") == {"said": "answers"}
        assert len(await uow.transcripts.list("c1")) == 1


async def test_expired_copies_are_old_replies_and_old_sent_chat_messages(
    storage: SqlStorage, clock: Any
) -> None:
    await seed(storage, "old")
    async with storage.unit_of_work() as uow:
        claimed = await uow.outbox.claim("telegram.send", limit=10, lease_seconds=30)
        for message in claimed:
            assert message.id is not None
            await uow.outbox.mark_done(message.id)
        await uow.commit()
    clock.advance(3600)
    await seed(storage, "new")
    cutoff = clock() - timedelta(minutes=30)

    async with storage.unit_of_work() as uow:
        assert await uow.erasure.expired_copies(cutoff, limit=1) == 2
        await uow.commit()
    async with storage.unit_of_work() as uow:
        assert await uow.erasure.expired_copies(cutoff, limit=1) == 0
    assert [r["message_id"] for r in await rows(storage, inbound_messages)] == ["new-m1"]
    # The new chat message is still pending, the events carry no conversation's words.
    remaining = sorted((r["topic"], r["conversation_id"]) for r in await rows(storage, outbox))
    assert remaining == [
        ("report.submitted", None),
        ("report.submitted", None),
        ("telegram.send", "new"),
    ]


async def test_a_conversations_kept_replies_are_found_by_index(storage: SqlStorage) -> None:
    """Erasure reads a conversation's kept replies through indexes, a web conversation's (by
    scope) and a chat's (by conversation id) alike: never a scan of the table, which holds a
    day of every conversation's replies. PostgreSQL is told to avoid scans if it can, as it
    would on a large table."""
    # The WHERE clause of DELETE_REPLIES and REPLACE_REPLIES, in a SELECT (which takes values).
    found = (
        select(inbound_messages.c.message_id)
        .where(REPLIES_OF_CONVERSATION)
        .params(b_conversation_id="c1")
    )
    sql = str(found.compile(dialect=storage.engine.dialect, compile_kwargs={"literal_binds": True}))
    async with storage.engine.begin() as connection:
        if storage.backend == "sqlite":
            plan = [
                row[-1] for row in await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)
            ]
            scanned = [step for step in plan if step.startswith("SCAN")]
        else:
            await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = [row[0] for row in await connection.exec_driver_sql("EXPLAIN " + sql)]
            scanned = [step for step in plan if "Seq Scan" in step]
    assert plan and not scanned, plan
    assert any("ix_inbound_messages_conversation_id" in step for step in plan), plan
