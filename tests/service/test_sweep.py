"""The every-minute sweeper (`purge_untouched`, `erase_finished`): what it deletes and erases
on every backend, that on SQL it reads only the conversations due (the marks of migration
0010), and that on PostgreSQL an ordinary turn's update stays HOT."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.app import build_service
from bot.config import Settings
from bot.engine.types import Inbound
from bot.intake.service import ENDED_RETENTION, IntakeService
from storage.sqlalchemy_storage import SqlStorage
from tests.fixtures import SMALL_DIRECTORY
from tests.pg_schema import fresh_postgres_schema
from tests.service.conftest import _admin
from tests.service.test_service import GOOD_PATH, drive

HOUR = timedelta(hours=1)


def _clocked(service: IntakeService) -> list[datetime]:
    now = [datetime.now(UTC)]
    service._clock = lambda: now[0]
    return now


async def _marks(service: IntakeService) -> dict[str, tuple[bool, bool]]:
    """Each conversation's (untouched_at set, finished_at set), on SQL backends."""
    assert isinstance(service.storage, SqlStorage)
    async with service.storage.engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT id, untouched_at, finished_at FROM conversations")
        )
        return {row.id: (row.untouched_at is not None, row.finished_at is not None) for row in rows}


async def test_untouched_conversations_are_deleted_and_answered_ones_kept(
    any_service: IntakeService,
) -> None:
    service = any_service
    now = _clocked(service)
    empty = await service.start(channel="web")
    answered = await service.start(channel="web")
    # A turn at the very instant the conversation opened leaves `updated_at` at `created_at`:
    # still untouched, as the sweeper has always counted it.
    same_instant = await service.start(channel="web")
    await service.handle(same_instant.conversation_id, Inbound("choice", "start"), message_id="1")
    chat = await service.handle_for_channel_key(
        "telegram", "42", Inbound("start", ""), message_id="1", scope="telegram:test"
    )
    later = now[0] + timedelta(seconds=1)
    now[0] = later
    await service.handle(answered.conversation_id, Inbound("choice", "start"), message_id="1")
    answered_later = await service.start(channel="web")
    now[0] += timedelta(seconds=1)
    await service.handle(answered_later.conversation_id, Inbound("choice", "start"))
    assert await service.purge_untouched(HOUR) == 0

    now[0] = later + HOUR + timedelta(seconds=1)
    fresh = await service.start(channel="web")
    assert await service.purge_untouched(HOUR, batch=1) == 2
    assert await service.purge_untouched(HOUR) == 0
    async with service.storage.unit_of_work() as uow:
        for gone in (empty, same_instant):
            assert await uow.conversations.get(gone.conversation_id) is None
        for kept in (answered, answered_later, fresh, chat):
            assert await uow.conversations.get(kept.conversation_id) is not None
    if isinstance(service.storage, SqlStorage):
        marks = await _marks(service)
        assert marks[fresh.conversation_id] == (True, False)
        assert marks[answered.conversation_id] == (False, False)


async def test_finished_conversations_are_erased_once_and_again_after_a_new_turn(
    any_service: IntakeService,
) -> None:
    service = any_service
    now = _clocked(service)
    idle = await service.start(channel="web")
    await service.handle(idle.conversation_id, Inbound("choice", "start"), message_id="a")
    talking = await service.start(channel="web")
    await service.handle(talking.conversation_id, Inbound("choice", "start"), message_id="a")
    now[0] += timedelta(days=31)
    assert await service.purge_idle(timedelta(days=30)) == 2  # ended, nothing left to erase
    submitted = []
    for _ in range(3):
        start = await service.start(channel="web", with_token=True)
        await drive(service, start.conversation_id, [*GOOD_PATH, ("choice", "submit")])
        submitted.append(start.conversation_id)
        now[0] += timedelta(seconds=1)
    cancelled = await service.start(channel="web")
    await service.handle(cancelled.conversation_id, Inbound("choice", "start"), message_id="a")
    await service.handle(cancelled.conversation_id, Inbound("command", "cancel"), message_id="b")
    assert await service.erase_finished() == 0

    now[0] += ENDED_RETENTION + timedelta(seconds=1)
    # The oldest first, in batches; the idle-ended ones have nothing to erase.
    assert await service.erase_finished(batch=2) == 4
    assert await service.erase_finished() == 0
    async with service.storage.unit_of_work() as uow:
        for conversation_id in [*submitted, cancelled.conversation_id]:
            assert await uow.transcripts.list(conversation_id) == []
            record = await uow.conversations.get(conversation_id)
            assert record is not None and record.state.answers == {}
    if isinstance(service.storage, SqlStorage):
        # Every conversation the eraser went through is off its index, with data or not.
        assert all(not finished for _, finished in (await _marks(service)).values())

    # A turn on a finished conversation (the terminal has no token) writes lines again: erased
    # once it is an hour old, as before.
    await service.handle(submitted[0], Inbound("text", "hello again"), message_id="late")
    async with service.storage.unit_of_work() as uow:
        assert await uow.transcripts.list(submitted[0])
    assert await service.erase_finished() == 0
    now[0] += ENDED_RETENTION + timedelta(seconds=1)
    assert await service.erase_finished() == 1
    async with service.storage.unit_of_work() as uow:
        assert await uow.transcripts.list(submitted[0]) == []
        _, kept = await uow.conversations.get_for_turn(
            submitted[0], scope=submitted[0], message_id="late"
        )
        assert kept is None


# -- PostgreSQL: reads only what is due; ordinary turns stay HOT ----------------------------


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_postgres_schema("intake_sweep") as url:
        yield url


async def _pg_service(url: str) -> IntakeService:
    return await build_service(Settings(database_url=url, directory_csv=SMALL_DIRECTORY))


async def _updates(url: str, expected_at_least: int) -> tuple[int, int]:
    """(n_tup_upd, n_tup_hot_upd) of conversations, once the statistics count at least
    `expected_at_least` updates (they reach the collector when a session ends or idles)."""
    schema = make_url(url).query["search_path"]
    admin = await _admin()
    try:
        for _ in range(150):
            row = await admin.fetchrow(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                "WHERE schemaname = $1 AND relname = 'conversations'",
                schema,
            )
            assert row is not None
            if row["n_tup_upd"] >= expected_at_least:
                return int(row["n_tup_upd"]), int(row["n_tup_hot_upd"])
            await admin.execute("SELECT pg_stat_clear_snapshot()")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    raise AssertionError(f"the statistics never counted {expected_at_least} updates: {row}")


@pytest.mark.postgres
async def test_ordinary_turns_stay_hot_on_postgres(pg_url: str) -> None:
    """An index that mentions a column an ordinary turn changes (updated_at, state, revision,
    the sweeper's marks if a turn changed them) makes every turn's update non-HOT: this fails
    then. The first turn of a conversation clears `untouched_at` (not HOT, once); later
    turns write NULL over NULL in both marks."""
    service = await _pg_service(pg_url)
    assert isinstance(service.storage, SqlStorage)
    async with service.storage.engine.connect() as connection:
        # Room on every page for the turns' new row versions, whatever holds back pruning
        # on a shared server: only an index may make an update non-HOT here.
        await connection.execute(text("ALTER TABLE conversations SET (fillfactor = 10)"))
        await connection.commit()
    web = []
    try:
        for _ in range(30):
            start = await service.start(channel="web")
            await service.handle(start.conversation_id, Inbound("choice", "start"), message_id="0")
            web.append(start.conversation_id)
        for chat in range(10):
            for number in range(2):  # the chat's opening message, then its first turn
                await service.handle_for_channel_key(
                    "telegram",
                    str(chat),
                    Inbound("start", "") if number == 0 else Inbound("choice", "start"),
                    message_id=f"{chat}-{number}",  # one scope for the whole channel
                    scope="telegram:test",
                )
    finally:
        await service.storage.close()  # the sessions end: their statistics are reported
    first_turns = 30 + 10
    before, before_hot = await _updates(pg_url, first_turns)

    service = await _pg_service(pg_url)
    turns = 0
    try:
        for round_ in range(5):
            for conversation_id in web:
                step = ("choice", "good") if round_ % 2 == 0 else ("command", "back")
                await service.handle(
                    conversation_id,
                    Inbound(*step),
                    message_id=f"r{round_}",  # type: ignore[arg-type]
                )
                turns += 1
            for chat in range(10):
                step = ("choice", "good") if round_ % 2 == 0 else ("command", "back")
                await service.handle_for_channel_key(
                    "telegram",
                    str(chat),
                    Inbound(*step),  # type: ignore[arg-type]
                    message_id=f"{chat}-r{round_}",
                    scope="telegram:test",
                )
                turns += 1
        async with service.storage.unit_of_work() as uow:
            for conversation_id in web:
                record = await uow.conversations.get(conversation_id)
                assert record is not None and record.state.status == "active"
    finally:
        await service.storage.close()
    updated, hot = await _updates(pg_url, before + turns)
    assert turns == 200
    assert (updated - before, hot - before_hot) == (turns, turns)


@pytest.mark.postgres
async def test_the_sweeper_reads_only_what_is_due_on_postgres(pg_url: str) -> None:
    """Many conversations finished and already erased, many being talked in, a few due: the
    sweeper's statements read the few (per pg_stat_xact_user_tables), not the many."""
    service = await _pg_service(pg_url)
    assert isinstance(service.storage, SqlStorage)
    old = datetime.now(UTC) - timedelta(days=3)
    try:
        async with service.storage.engine.connect() as connection:
            for prefix, count, status, later, untouched, finished in (
                ("done", 3000, "ended", "0", False, False),  # finished, already erased
                ("talk", 1000, "active", "1", False, False),  # being talked in
                ("due", 5, "ended", "0", False, True),
                ("empty", 5, "active", "0", True, False),
            ):
                await connection.execute(
                    text(
                        "INSERT INTO conversations (id, channel, channel_key, state, status, "
                        "revision, created_at, updated_at, transcript_seq, untouched_at, "
                        "finished_at) "
                        "SELECT :prefix || g, 'web', NULL, CAST(:state AS jsonb), :status, 5, "
                        ":old, CAST(:old AS timestamptz) "
                        "+ CAST(:later || ' seconds' AS interval), 9, "
                        "CASE WHEN :untouched THEN :old END, CASE WHEN :finished THEN :old END "
                        "FROM generate_series(1, :count) g"
                    ),
                    {
                        "prefix": f"{prefix}-",
                        "state": f'{{"step": "x", "status": "{status}"}}',
                        "status": status,
                        "old": old,
                        "later": later,
                        "untouched": untouched,
                        "finished": finished,
                        "count": count,
                    },
                )
            await connection.execute(
                text(
                    "INSERT INTO transcript_entries (conversation_id, seq, role, payload, "
                    "created_at) SELECT 'due-' || g, 1, 'bot', '{}', :old "
                    "FROM generate_series(1, 5) g"
                ),
                {"old": old},
            )
            await connection.execute(text("ANALYZE conversations"))
            await connection.commit()
        reads = {}
        for name, purge in (
            ("untouched", service.storage.unit_of_work),
            ("finished", service.storage.unit_of_work),
        ):
            async with purge() as uow:
                if name == "untouched":
                    done = await uow.conversations.delete_untouched(
                        "web", datetime.now(UTC) - HOUR, limit=500
                    )
                else:
                    done = len(
                        await uow.conversations.list_finished_with_data(
                            datetime.now(UTC) - HOUR, limit=200
                        )
                    )
                assert done == 5
                db = uow._db  # type: ignore[attr-defined]
                reads[name] = (
                    await db.execute(
                        text(
                            "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
                            "FROM pg_stat_xact_user_tables "
                            "WHERE relname = 'conversations' AND schemaname = current_schema()"
                        )
                    )
                ).scalar_one()
                await uow.commit()
        # The 5 due rows, found by the index and read again by key (to delete them, to clear
        # their marks): a few reads each, where a scan read the 4,010.
        assert reads["untouched"] <= 50 and reads["finished"] <= 50, reads
    finally:
        await service.storage.close()


async def test_the_daily_purge_marks_what_an_older_release_ended(
    any_service: IntakeService,
) -> None:
    """A conversation ended by a worker of the release before migration 0010 has no mark:
    the sweeper misses it until `mark_unswept` (the daily purge) puts it back."""
    service = any_service
    now = _clocked(service)
    start = await service.start(channel="web")
    await service.handle(start.conversation_id, Inbound("choice", "start"), message_id="a")
    await service.handle(start.conversation_id, Inbound("command", "cancel"), message_id="b")
    if isinstance(service.storage, SqlStorage):
        async with service.storage.engine.connect() as connection:
            await connection.execute(text("UPDATE conversations SET finished_at = NULL"))
            await connection.commit()
    now[0] += ENDED_RETENTION + timedelta(seconds=1)
    if isinstance(service.storage, SqlStorage):
        assert await service.erase_finished() == 0
        assert await service.mark_unswept() == 1
    assert await service.mark_unswept() == 0
    assert await service.erase_finished() == 1
    assert await service.mark_unswept() == 0
