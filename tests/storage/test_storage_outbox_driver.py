"""Outbox statements on the driver's connection (`storage.outbox`): rows stored as the
SQLAlchemy statements they replaced stored them, with nothing run through SQLAlchemy's
execution, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import event, insert, select

from bot.ports import OutboxMessage
from storage.models import outbox
from storage.sqlalchemy_storage import SqlStorage, SqlUnitOfWork


@contextmanager
def through_sqlalchemy(storage: SqlStorage) -> Iterator[list[str]]:
    """The statements SQLAlchemy executes within the block."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(storage.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(storage.engine.sync_engine, "before_cursor_execute", record)


def _columns(row: Any) -> tuple[Any, ...]:
    return tuple(getattr(row, name) for name in outbox.c.keys() if name not in ("id", "topic"))


async def test_a_message_added_unclaimed_is_stored_as_the_sqlalchemy_insert_stored_it(
    storage: SqlStorage,
) -> None:
    at = datetime(2026, 11, 30, 23, 59, 59, 654321, tzinfo=timezone(timedelta(hours=2)))
    naive = datetime(2026, 11, 30, 1, 2, 3, 4)  # taken as UTC, as `UTCDateTime` takes it
    messages = [
        OutboxMessage(
            "new",
            "7",
            {"chat_id": "7", "messages": [{"text": "Grüß dich ✓", "choices": [["a", "A"]]}]},
            conversation_id="c1",
        ),
        OutboxMessage(
            "new",
            "7",
            {"n": 2, "nested": {"list": [1, 2.5, None, True]}},
            available_at=at,
            created_at=naive,
            attempts=3,
            last_error="network",
            idempotency_key="R1:kind",
        ),
    ]
    with through_sqlalchemy(storage) as seen:
        async with storage.unit_of_work() as uow:
            claimed = await uow.outbox.add([messages[0]])  # unkeyed: no look-up
            await uow.commit()
    assert claimed == [] and seen == []
    async with storage.unit_of_work() as uow:
        await uow.outbox.add([messages[1]])
        await uow.commit()
    assert messages[0].id is not None and messages[1].id == messages[0].id + 1
    async with storage.unit_of_work() as uow:
        assert isinstance(uow, SqlUnitOfWork) and uow._db is not None
        await uow._db.execute(
            insert(outbox),
            [
                {
                    "idempotency_key": None
                    if m.idempotency_key is None
                    else "old-" + m.idempotency_key,
                    "topic": "old",
                    "ordering_key": m.ordering_key,
                    "payload": m.payload,
                    "status": m.status,
                    "attempts": m.attempts,
                    "available_at": m.available_at,
                    "created_at": m.created_at,
                    "claimed_until": None,
                    "last_error": m.last_error,
                    "conversation_id": m.conversation_id,
                }
                for m in messages
            ],
        )
        await uow.commit()
    async with storage.engine.connect() as connection:
        rows = (await connection.execute(select(outbox).order_by(outbox.c.id))).all()
    new = [row for row in rows if row.topic == "new"]
    old = [row for row in rows if row.topic == "old"]
    assert [row.id for row in new] == [m.id for m in messages]
    assert [_columns(row)[:-1] for row in new] == [_columns(row)[:-1] for row in old]
    assert [row.idempotency_key for row in new] == [None, "R1:kind"]
    assert new[1].available_at == at.astimezone(UTC)
    assert new[1].created_at == naive.replace(tzinfo=UTC)
    assert messages[0].created_at == new[0].created_at
    if storage.engine.dialect.name == "sqlite":  # the raw text, as SQLAlchemy writes it
        async with storage.engine.connect() as connection:
            raw = (
                await connection.exec_driver_sql(
                    "SELECT topic, payload, available_at, created_at FROM outbox ORDER BY id"
                )
            ).all()
        assert [r[1:] for r in raw if r[0] == "new"] == [r[1:] for r in raw if r[0] == "old"]
        # One encoding of stored JSON, the driver's and SQLAlchemy's (`json_text`): compact,
        # and the words a person reads as they are, not as \u escapes (a reply in Arabic or
        # Bengali took about twice the bytes).
        assert raw[0][1] == (
            '{"chat_id":"7","messages":[{"text":"Grüß dich ✓","choices":[["a","A"]]}]}'
        )
    # A known idempotency key is still written once.
    async with storage.unit_of_work() as uow:
        again = OutboxMessage("new", "7", {"n": 3}, idempotency_key="R1:kind")
        await uow.outbox.add([again])
        await uow.commit()
    assert again.id is None


async def test_claims_and_settles_run_on_the_driver_and_store_what_sqlalchemy_stored(
    storage: SqlStorage, clock: Any
) -> None:
    """The dispatcher's statements (claim, sent with the audit payload kept, retry later,
    given up) run on the driver's connection; the claimed messages read back as SQLAlchemy
    read them, and the rows hold what its statements wrote (times as its types store them)."""
    async with storage.unit_of_work() as uow:
        await uow.outbox.add(
            [
                OutboxMessage("t", key, {"kind": "reply", "reference": "R", "text": "Grüß ✓"})
                for key in ("a", "b", "c", "a")
            ],
        )
        await uow.commit()
    with through_sqlalchemy(storage) as seen:
        async with storage.unit_of_work() as uow:
            claimed = await uow.outbox.claim(["t", "other"], limit=10, lease_seconds=30)
            await uow.commit()
        now = clock()
        async with storage.unit_of_work() as uow:
            await uow.outbox.mark_done(claimed[0].id, keep={"kind": "reply", "reference": "R"})
            await uow.outbox.retry_later(claimed[1].id, delay_seconds=60, error="network")
            await uow.outbox.mark_failed(claimed[2].id, error="blocked")
            following = await uow.outbox.claim("t", limit=10, lease_seconds=30)
            await uow.commit()
    assert seen == []
    assert [(m.ordering_key, m.attempts, m.status) for m in claimed] == [
        ("a", 1, "pending"),
        ("b", 1, "pending"),
        ("c", 1, "pending"),
    ]
    assert [m.ordering_key for m in following] == ["a"]  # "b" waits for its retry
    async with storage.engine.connect() as connection:
        rows = (await connection.execute(select(outbox).order_by(outbox.c.id))).all()
    for message, row in zip(claimed + following, rows[:3] + rows[3:], strict=True):
        assert message.payload == {"kind": "reply", "reference": "R", "text": "Grüß ✓"}
        assert (message.created_at, message.available_at) == (row.created_at, rows[0].available_at)
        assert message.created_at is not None and message.created_at.tzinfo is UTC
    done, retry, failed, later = rows
    assert (done.status, done.payload, done.claimed_until) == (
        "done",
        {"kind": "reply", "reference": "R"},
        None,
    )
    assert (retry.status, retry.claimed_until, retry.last_error) == ("pending", None, "network")
    assert timedelta(seconds=59) < retry.available_at - now < timedelta(seconds=61)
    assert (failed.status, failed.claimed_until, failed.last_error) == ("failed", None, "blocked")
    assert later.status == "pending" and later.claimed_until is not None
    assert timedelta(seconds=29) < later.claimed_until - now < timedelta(seconds=31)
    if storage.engine.dialect.name == "sqlite":  # naive UTC text, as SQLAlchemy writes it
        async with storage.engine.connect() as connection:
            raw = (
                await connection.exec_driver_sql(
                    "SELECT available_at, claimed_until FROM outbox ORDER BY id"
                )
            ).all()
        for value in (raw[1][0], raw[3][1]):
            assert len(value) == len("2026-11-30 21:59:59.654321") and value[10] == " "
