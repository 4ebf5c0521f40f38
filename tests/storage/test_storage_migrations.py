"""The hand-written migration and the models describe the same schema, on every backend."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bot.channels.telegram.delivery import TOPIC as TELEGRAM_REPLIES
from bot.ports import OutboxMessage
from storage import create_storage, current_revision, upgrade
from storage.engine import create_engine
from storage.migrate import alembic_config, head_revision
from storage.models import metadata


def _not_search_index(name: str | None, type_: str, _parent: Any) -> bool:
    """Outside the models (migration 0006): SQLite's FTS5 table and its shadow tables, and the
    expression indexes (full-text search, location)."""
    return not (name or "").startswith(("reports_fts", "ix_reports_fts", "ix_reports_location_id"))


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_name": _not_search_index}
    )
    return list(compare_metadata(context, metadata))


# SQLite cannot reflect an expression index (0006's location index); it is left out on purpose.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
async def test_migration_matches_models(database_url: str) -> None:
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            diffs = await connection.run_sync(_diff)
    finally:
        await engine.dispose()
    assert diffs == []


async def test_upgrade_is_repeatable_and_concurrent(database_url: str) -> None:
    assert await current_revision(database_url) is None
    # Workers starting together: the lock makes them take turns, the later ones do nothing.
    await asyncio.gather(*(upgrade(database_url) for _ in range(3)))
    await upgrade(database_url)
    assert await current_revision(database_url) == head_revision() == "0015"


def test_config_does_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    script_location = Path(alembic_config().get_main_option("script_location") or "")
    assert script_location.is_absolute()
    assert (script_location / "env.py").is_file()
    assert head_revision() == "0015"


async def test_0003_backfills_transcript_seq(database_url: str) -> None:
    """Conversations from before 0003 continue their transcript after its last line."""
    await upgrade(database_url, "0002")
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            for conversation_id in ("talked", "silent"):
                await connection.execute(
                    text(
                        "INSERT INTO conversations (id, channel, state, status, revision, "
                        "created_at, updated_at) VALUES (:id, 'web', :state, 'active', 0, CURRENT_TIMESTAMP, "
                        "CURRENT_TIMESTAMP)"
                    ),
                    {"id": conversation_id, "state": '{"step": "start"}'},
                )
            for seq in (1, 2, 5):
                await connection.execute(
                    text(
                        "INSERT INTO transcript_entries (conversation_id, seq, role, payload, "
                        "created_at) VALUES ('talked', :seq, 'bot', '{}', CURRENT_TIMESTAMP)"
                    ),
                    {"seq": seq},
                )
    finally:
        await engine.dispose()
    await upgrade(database_url)
    storage = await create_storage(database_url)
    try:
        async with storage.unit_of_work() as uow:
            talked = await uow.conversations.get("talked")
            silent = await uow.conversations.get("silent")
    finally:
        await storage.close()
    assert talked is not None and silent is not None
    assert (talked.transcript_seq, silent.transcript_seq) == (6, 1)


async def test_0004_keys_kept_replies_and_chat_messages_by_conversation(database_url: str) -> None:
    """Rows from before 0004 get the conversation id their JSON already holds, so erasing the
    conversation finds them; events that carry no conversation stay unkeyed."""
    await upgrade(database_url, "0003")
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO inbound_messages (scope, message_id, reply, created_at) VALUES "
                    "('web', 'm1', :reply, CURRENT_TIMESTAMP)"
                ),
                {"reply": '{"conversation_id": "c1", "messages": []}'},
            )
            for topic, payload in (
                ("telegram.send", '{"chat_id": "9", "conversation_id": "c1"}'),
                ("report.submitted", '{"reference": "ABCD-EFGH"}'),
            ):
                await connection.execute(
                    text(
                        "INSERT INTO outbox (topic, ordering_key, payload, status, attempts, "
                        "available_at, created_at) VALUES (:topic, 'k', :payload, 'pending', 0, "
                        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    ),
                    {"topic": topic, "payload": payload},
                )
    finally:
        await engine.dispose()
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            replies = (
                await connection.execute(text("SELECT conversation_id FROM inbound_messages"))
            ).all()
            messages = (
                await connection.execute(
                    text("SELECT topic, conversation_id FROM outbox ORDER BY id")
                )
            ).all()
    finally:
        await engine.dispose()
    assert [tuple(r) for r in replies] == [("c1",)]
    assert [tuple(m) for m in messages] == [("telegram.send", "c1"), ("report.submitted", None)]


async def _downgrade(database_url: str, revision: str) -> None:
    from alembic import command

    from storage.migrate import run_locked

    def downgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    await run_locked(database_url, downgrade)


async def test_0010_marks_what_the_sweeper_has_to_do_and_downgrades(database_url: str) -> None:
    """Untouched active conversations get `untouched_at`, finished ones with transcript lines
    or replies kept under their id get `finished_at` (their `updated_at`); nothing else is
    marked. The downgrade drops both columns and their indexes, and upgrading again works."""
    await upgrade(database_url, "0009")
    engine = create_engine(database_url)
    created, updated = "2026-11-01 10:00:00.000000", "2026-11-01 10:05:00.000000"
    rows = {
        # id: (status, updated_at)
        "untouched": ("active", created),
        "talking": ("active", updated),
        "ended-with-lines": ("ended", updated),
        "submitted-with-reply": ("submitted", updated),
        "ended-erased": ("ended", updated),
        "ended-untouched": ("ended", created),
    }
    try:
        async with engine.begin() as connection:
            for conversation_id, (status, updated_at) in rows.items():
                await connection.execute(
                    text(
                        "INSERT INTO conversations (id, channel, state, status, revision, "
                        "created_at, updated_at) VALUES (:id, 'web', :state, :status, 0, "
                        f"'{created}', '{updated_at}')"
                    ),
                    {"id": conversation_id, "state": '{"step": "start"}', "status": status},
                )
            await connection.execute(
                text(
                    "INSERT INTO transcript_entries (conversation_id, seq, role, payload, "
                    "created_at) VALUES ('ended-with-lines', 1, 'bot', '{}', CURRENT_TIMESTAMP),"
                    " ('talking', 1, 'bot', '{}', CURRENT_TIMESTAMP)"
                )
            )
            await connection.execute(
                text(
                    "INSERT INTO inbound_messages (scope, message_id, reply, created_at) VALUES "
                    "('submitted-with-reply', 'm1', '{}', CURRENT_TIMESTAMP), "
                    "('telegram:x', 'ended-erased', '{}', CURRENT_TIMESTAMP)"
                )
            )
    finally:
        await engine.dispose()
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            marks = {
                row.id: (row.untouched_at, row.finished_at)
                for row in await connection.execute(
                    text("SELECT id, untouched_at, finished_at FROM conversations")
                )
            }
    finally:
        await engine.dispose()

    def moment(value: Any) -> Any:
        return None if value is None else str(value)[:19]

    assert {key: (moment(a), moment(b)) for key, (a, b) in marks.items()} == {
        "untouched": (created[:19], None),
        "talking": (None, None),
        "ended-with-lines": (None, updated[:19]),
        "submitted-with-reply": (None, updated[:19]),
        "ended-erased": (None, None),
        "ended-untouched": (None, None),
    }

    await _downgrade(database_url, "0009")
    assert await current_revision(database_url) == "0009"
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            columns = await connection.run_sync(
                lambda sync: {
                    column["name"] for column in inspect(sync).get_columns("conversations")
                }
            )
    finally:
        await engine.dispose()
    assert "untouched_at" not in columns and "finished_at" not in columns
    await upgrade(database_url, "0010")
    assert await current_revision(database_url) == "0010"


IDEMPOTENCY = "uq_outbox_idempotency_key"
REPLIES_BY_CONVERSATION = "ix_inbound_messages_conversation_id"


async def _index_definition(database_url: str, name: str) -> str:
    """How the database defines index `name`."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                query = "SELECT sql FROM sqlite_master WHERE name = :name"
            else:
                query = (
                    "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
                    " AND schemaname = current_schema()"
                )
            return str((await connection.execute(text(query), {"name": name})).scalar_one())
    finally:
        await engine.dispose()


async def _add_outbox_rows(database_url: str, *keys: str | None) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            for key in keys:
                await connection.execute(
                    text(
                        "INSERT INTO outbox (topic, ordering_key, payload, status, attempts, "
                        "available_at, created_at, idempotency_key) VALUES ('telegram.send', "
                        "'chat', '{}', 'pending', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, :key)"
                    ),
                    {"key": key},
                )
    finally:
        await engine.dispose()


async def test_0011_indexes_only_keyed_outbox_messages_and_downgrades(database_url: str) -> None:
    """The idempotency index holds only rows with a key (a Telegram reply has none): a key is
    still written at most once, rows without one never conflict. The downgrade puts back the
    index of every row, and upgrading again works."""
    await upgrade(database_url)
    assert "idempotency_key IS NOT NULL" in await _index_definition(database_url, IDEMPOTENCY)
    await _add_outbox_rows(database_url, None, None, "r1:email")
    with pytest.raises(IntegrityError):
        await _add_outbox_rows(database_url, "r1:email")

    await _downgrade(database_url, "0010")
    assert "WHERE" not in (await _index_definition(database_url, IDEMPOTENCY)).upper()
    await upgrade(database_url)
    assert "idempotency_key IS NOT NULL" in await _index_definition(database_url, IDEMPOTENCY)


async def test_0012_indexes_only_replies_kept_under_another_scope_and_downgrades(
    database_url: str,
) -> None:
    """The replies' conversation index holds only rows whose scope is not their conversation
    (a chat's; a web conversation's are found by scope). The downgrade indexes every row
    again, and upgrading again works."""
    await upgrade(database_url)
    partial = await _index_definition(database_url, REPLIES_BY_CONVERSATION)
    assert "WHERE" in partial and "<>" in partial and "scope" in partial, partial
    await _downgrade(database_url, "0011")
    definition = await _index_definition(database_url, REPLIES_BY_CONVERSATION)
    assert "WHERE" not in definition.upper()
    await upgrade(database_url)
    assert await current_revision(database_url) == head_revision()


REPORT_SEARCH = "ix_reports_fts"


async def _store_report(database_url: str, reference: str, what_happened: str) -> None:
    """A routine report, stored as a submission stores it (the reports repository)."""
    from datetime import UTC, datetime

    from bot.ports import StoredReport

    storage = await create_storage(database_url)
    try:
        async with storage.unit_of_work() as uow:
            await uow.reports.add(
                StoredReport(
                    reference=reference,
                    conversation_id=f"conversation-{reference}",
                    created_at=datetime.now(UTC),
                    channel="web",
                    locale="en",
                    priority="routine",
                    data={
                        "reference": reference,
                        "priority": "routine",
                        "what_happened": what_happened,
                    },
                )
            )
            await uow.commit()
    finally:
        await storage.close()


async def _found_by_word(database_url: str, word: str) -> list[str]:
    from storage.staff import StaffStore
    from storage.staff_reports import QueueFilters

    engine = create_engine(database_url)
    try:
        async with StaffStore(engine).transaction() as tx:
            page = await tx.reports.queue(QueueFilters(text=word), limit=25)
    finally:
        await engine.dispose()
    return sorted(item.reference for item in page.items)


async def _search_index_options(database_url: str) -> list[str] | None:
    """PostgreSQL's storage options of the report search index (None: the defaults)."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            options = await connection.execute(
                text(
                    "SELECT c.reloptions FROM pg_class AS c JOIN pg_namespace AS n"
                    " ON n.oid = c.relnamespace"
                    " WHERE c.relname = :name AND n.nspname = current_schema()"
                ),
                {"name": REPORT_SEARCH},
            )
            return options.scalar_one()  # type: ignore[no-any-return]
    finally:
        await engine.dispose()


async def _pending_pages(database_url: str) -> int:
    """Merges PostgreSQL's pending list of the report search index: how many pages it held."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            pages = await connection.execute(
                text("SELECT gin_clean_pending_list(CAST(:name AS regclass))"),
                {"name": REPORT_SEARCH},
            )
            return int(pages.scalar_one())
    finally:
        await engine.dispose()


async def test_0013_indexes_each_report_as_it_is_stored_and_downgrades(
    database_url: str,
) -> None:
    """On PostgreSQL the search index keeps no pending list (its flush, once the list was
    full, fell inside a person's submission): the option is set, and the reports already
    waiting in the list are merged by the upgrade. Search finds every report before, after
    and across the migration and its downgrade, on both backends."""
    postgres = database_url.startswith("postgresql")
    await upgrade(database_url, "0012")
    await _store_report(database_url, "R0012", "the night carer never came")
    if postgres:
        assert await _search_index_options(database_url) is None
    await upgrade(database_url, "0013")
    if postgres:
        assert await _pending_pages(database_url) == 0  # merged by the upgrade
    await _store_report(database_url, "R0013", "no carer at night again")
    if postgres:
        assert await _search_index_options(database_url) == ["fastupdate=off"]
        assert await _pending_pages(database_url) == 0
    assert await _found_by_word(database_url, "carer") == ["R0012", "R0013"]
    await _downgrade(database_url, "0012")
    if postgres:
        assert await _search_index_options(database_url) is None
    assert await _found_by_word(database_url, "night") == ["R0012", "R0013"]
    await upgrade(database_url, "0013")
    assert await current_revision(database_url) == "0013"


#: 200 reports of 40 words no other report uses: about 28 pages of pending list at once,
#: against at most 8 (64 kB) and one being filled.
_MANY_NEW_WORDS = """
    INSERT INTO reports (reference, conversation_id, created_at, channel, locale, priority, data)
    SELECT 'M' || g, 'conversation-M' || g, now(), 'web', 'en', 'routine',
        jsonb_build_object('reference', 'M' || g, 'priority', 'routine', 'what_happened',
            (SELECT string_agg('word' || g || 'x' || i, ' ') FROM generate_series(1, 40) AS i))
    FROM generate_series(1, 200) AS g
"""


async def _store_many_new_words(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(_MANY_NEW_WORDS))
    finally:
        await engine.dispose()


async def test_0014_keeps_a_small_pending_list_and_downgrades(database_url: str) -> None:
    """On PostgreSQL the search index keeps a pending list again, of 64 kB (without one, each
    report rewrote its words' whole entries in the WAL): a new report waits in the list and
    is found there; many reports at once leave the list no longer than its limit (merged as
    it fills, not at 4 MB); the downgrade takes the list away and merges what it holds.
    Search finds every report across the upgrade and the downgrade, on both backends."""
    postgres = database_url.startswith("postgresql")
    await upgrade(database_url, "0013")
    await _store_report(database_url, "R0013", "the night carer never came")
    await upgrade(database_url, "0014")
    assert await current_revision(database_url) == "0014"
    await _store_report(database_url, "R0014", "no carer at night again")
    assert await _found_by_word(database_url, "carer") == ["R0013", "R0014"]
    if postgres:
        assert await _search_index_options(database_url) == [
            "fastupdate=on",
            "gin_pending_list_limit=64",
        ]
        assert await _pending_pages(database_url) == 1  # R0014 waited there, found all the same
        await _store_many_new_words(database_url)
        assert await _pending_pages(database_url) <= 9  # 29 with no merge before 4 MB
        assert await _found_by_word(database_url, "word200x40") == ["M200"]
    await _store_report(database_url, "R0014b", "the carer left early")  # in the list
    await _downgrade(database_url, "0013")
    if postgres:
        assert await _search_index_options(database_url) == ["fastupdate=off"]
        assert await _pending_pages(database_url) == 0  # merged by the downgrade
    assert await _found_by_word(database_url, "carer") == ["R0013", "R0014", "R0014b"]


async def test_0015_notifies_no_telegram_reply_and_downgrades(database_url: str) -> None:
    """On PostgreSQL a new outbox row still wakes the listeners, unless it is a Telegram reply
    (no dispatcher listens for those); the downgrade notifies for every row again. SQLite has
    no trigger to change."""
    await upgrade(database_url, "0014")
    if not database_url.startswith("postgresql"):
        await upgrade(database_url)
        assert await current_revision(database_url) == head_revision() == "0015"
        return
    storage = await create_storage(database_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    # Topics of this test's own: the channel is per database, shared with other schemas.
    other, end = f"email.{uuid.uuid4().hex[:8]}", f"end.{uuid.uuid4().hex[:8]}"

    async def notified_topics(*topics: str) -> list[str]:
        """The topics notified when one row of each of `topics` is committed, then a row of
        `end`, whose notice ends the list (notices come in commit order)."""
        for topic in (*topics, end):
            async with storage.unit_of_work() as uow:
                await uow.outbox.add([OutboxMessage(topic, "chat 1", {})])
                await uow.commit()
        notices: list[str] = []
        async with asyncio.timeout(10):
            while not notices or notices[-1] != end:
                if (topic := await heard.get()) in (*topics, end):
                    notices.append(topic)
        return notices[:-1]

    listener = asyncio.create_task(storage.listen_outbox(heard.put_nowait))
    try:
        async with asyncio.timeout(10):
            assert await heard.get() == ""  # listening
        assert await notified_topics(TELEGRAM_REPLIES, other) == [TELEGRAM_REPLIES, other]
        await upgrade(database_url)
        assert await current_revision(database_url) == "0015"
        assert await notified_topics(TELEGRAM_REPLIES, other) == [other]
        await _downgrade(database_url, "0014")
        assert await notified_topics(TELEGRAM_REPLIES) == [TELEGRAM_REPLIES]
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await storage.close()
