"""A chat's message ids kept on the driver's connection (`SqlChatMessages.add`): stored as the
SQLAlchemy insert it replaced stored them, in order, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import event, insert, select

from bot.ports import ChatMessageIds
from storage.models import chat_messages
from storage.sqlalchemy_storage import SqlStorage, SqlUnitOfWork


async def test_ids_are_stored_as_the_sqlalchemy_insert_stored_them(storage: SqlStorage) -> None:
    at = datetime(2026, 11, 30, 23, 59, 59, 654321, tzinfo=timezone(timedelta(hours=2)))
    naive = datetime(2026, 11, 30, 1, 2, 3, 4)  # taken as UTC, as `UTCDateTime` takes it
    cases = [
        (ChatMessageIds("telegram", "7", (5, 3, 2**40), "c1"), at),
        (ChatMessageIds("telegram", "8", (9,)), naive),
        (ChatMessageIds("telegram", "9", ()), at),  # nothing to keep
    ]
    through_sqlalchemy: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        through_sqlalchemy.append(statement)

    for ids, moment in cases:
        event.listen(storage.engine.sync_engine, "before_cursor_execute", seen)
        try:
            async with storage.unit_of_work() as uow:
                await uow.chat_messages.add(ids, at=moment)
                await uow.commit()
        finally:
            event.remove(storage.engine.sync_engine, "before_cursor_execute", seen)
        async with storage.unit_of_work() as uow:
            assert isinstance(uow, SqlUnitOfWork) and uow._db is not None
            if ids.message_ids:
                await uow._db.execute(
                    insert(chat_messages),
                    [
                        {
                            "channel": ids.channel,
                            "channel_key": f"old-{ids.channel_key}",
                            "message_id": message_id,
                            "conversation_id": ids.conversation_id,
                            "created_at": moment,
                        }
                        for message_id in ids.message_ids
                    ],
                )
            await uow.commit()
    # On the driver's connection: nothing went through SQLAlchemy's execution.
    assert through_sqlalchemy == []
    async with storage.engine.connect() as connection:
        rows = (await connection.execute(select(chat_messages).order_by(chat_messages.c.id))).all()
    ours = [(r.channel, r.channel_key, r.message_id, r.conversation_id, r.created_at) for r in rows]
    new = [row for row in ours if not row[1].startswith("old-")]
    old = [(c, k.removeprefix("old-"), m, i, t) for c, k, m, i, t in ours if k.startswith("old-")]
    assert new == old
    assert new == [
        ("telegram", "7", 5, "c1", at.astimezone(UTC)),
        ("telegram", "7", 3, "c1", at.astimezone(UTC)),
        ("telegram", "7", 2**40, "c1", at.astimezone(UTC)),
        ("telegram", "8", 9, None, naive.replace(tzinfo=UTC)),
    ]
    # The raw text SQLite keeps is SQLAlchemy's too (string order = time order in SQL).
    if storage.engine.dialect.name == "sqlite":
        async with storage.engine.connect() as connection:
            raw = (await connection.exec_driver_sql("SELECT created_at FROM chat_messages")).all()
        assert {value for (value,) in raw} == {
            "2026-11-30 21:59:59.654321",
            "2026-11-30 01:02:03.000004",
        }
    async with storage.unit_of_work() as uow:
        assert await uow.chat_messages.take("telegram", "7") == [5, 3, 2**40]
