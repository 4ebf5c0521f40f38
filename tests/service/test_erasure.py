"""Cancel, the "not ours" end and the idle purge keep nothing of what was typed, in any table;
replies kept for idempotency after a report go once a retry can no longer arrive.

Every free-text answer and the contact name and email carry one unique marker; afterwards the
marker is searched for in every column of every table of the database (SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.app import build_service
from bot.config import Settings
from bot.engine.types import Inbound
from bot.intake.rendering import Reply
from bot.intake.service import IntakeService
from tests.erasure_support import SUMMARY_TO_END, new_marker, path_to_summary, tables_holding
from tests.fixtures import SMALL_DIRECTORY

TOPIC = "telegram.send"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def service(backend_url: str, clock: Clock) -> AsyncIterator[IntakeService]:
    settings = Settings(database_url=backend_url, directory_csv=SMALL_DIRECTORY)
    svc = await build_service(settings, clock=clock)
    yield svc
    await svc.storage.close()


class Person:
    """Someone in a conversation on the web (a conversation id) or in a Telegram chat (a
    channel key, replies through the outbox); every message has an id, as both channels send."""

    def __init__(self, service: IntakeService, channel: str) -> None:
        self.service = service
        self.channel = channel
        self.conversation_id = ""
        self.sent = 0

    async def begin(self) -> Reply:
        if self.channel == "web":
            reply = await self.service.start(channel="web", with_token=True)
        else:
            reply = await self.send("start", "")
        self.conversation_id = reply.conversation_id
        return reply

    async def send(self, kind: str, value: str, *, message_id: str | None = None) -> Reply:
        self.sent += 1
        inbound = Inbound(kind, value)  # type: ignore[arg-type]
        message_id = message_id or f"m{self.sent}"
        if self.channel == "web":
            return await self.service.handle(self.conversation_id, inbound, message_id=message_id)
        return await self.service.handle_for_channel_key(
            "telegram",
            "4242",
            inbound,
            message_id=message_id,
            scope="telegram:test",
            outbox_topic=TOPIC,
        )

    async def walk(self, steps: list[tuple[str, str]]) -> Reply:
        reply: Reply | None = None
        for kind, value in steps:
            reply = await self.send(kind, value)
        assert reply is not None
        return reply


def engine_of(service: IntakeService) -> Any:
    return service.storage.engine  # type: ignore[attr-defined]


async def deliver_all(service: IntakeService) -> int:
    """What the dispatcher does after a send: mark the chat messages done (delivered rows
    are copies too)."""
    delivered = 0
    while True:
        async with service.storage.unit_of_work() as uow:
            claimed = await uow.outbox.claim(TOPIC, limit=100, lease_seconds=30)
            for message in claimed:
                assert message.id is not None
                await uow.outbox.mark_done(message.id)
            await uow.commit()
        if not claimed:
            return delivered
        delivered += len(claimed)


@pytest.mark.parametrize("channel", ["web", "telegram"])
async def test_cancel_keeps_nothing_that_was_typed_in_any_table(
    service: IntakeService, channel: str
) -> None:
    marker = new_marker()
    person = Person(service, channel)
    await person.begin()
    summary = await person.walk(path_to_summary(marker))
    assert summary.step == "summary" and marker in summary.messages[-1].text
    if channel == "telegram":
        await deliver_all(service)  # some delivered, the summary's reply pending below
        await person.send("command", "help")
    held = await tables_holding(engine_of(service), marker)
    assert {"conversations.state", "transcript_entries.payload"} <= set(held)
    if channel == "telegram":
        assert "outbox.payload" in held
        # A reply the outbox sends is kept for a retried update without its words.
        assert "inbound_messages.reply" not in held
    else:
        assert "inbound_messages.reply" in held

    cancelled = await person.send("command", "cancel", message_id="cancel")
    assert cancelled.done and cancelled.step == "cancelled"

    assert await tables_holding(engine_of(service), marker) == []
    # The cancel turn's own reply stays deliverable and is kept for a retry of its update.
    again = await person.send("command", "cancel", message_id="cancel")
    words = channel == "web"  # a Telegram retry is not answered again: its row went once
    assert again.replayed and again.to_record(words=words) == cancelled.to_record(words=words)
    if channel == "telegram":
        async with service.storage.unit_of_work() as uow:
            pending = await uow.outbox.claim(TOPIC, limit=10, lease_seconds=30)
        assert [m.payload["messages"][0]["text"] for m in pending] == [cancelled.messages[0].text]
    # A late retry of an earlier message is answered with the end, and changes nothing.
    late = await person.send("text", "anything", message_id="m5")
    assert late.done and late.step == "cancelled"
    assert await tables_holding(engine_of(service), marker) == []


async def test_the_not_ours_end_keeps_nothing_that_was_typed(service: IntakeService) -> None:
    marker = new_marker()
    person = Person(service, "telegram")
    await person.begin()
    await person.walk(path_to_summary(marker))
    ended = await person.walk(SUMMARY_TO_END)
    assert ended.done and ended.step == "ended"
    assert await tables_holding(engine_of(service), marker) == []

    web = Person(service, "web")
    marker = new_marker()
    await web.begin()
    await web.walk(path_to_summary(marker))
    assert (await web.walk(SUMMARY_TO_END)).step == "ended"
    assert await tables_holding(engine_of(service), marker) == []


async def test_the_idle_purge_keeps_nothing_that_was_typed(
    service: IntakeService, clock: Clock
) -> None:
    markers = []
    for channel in ("web", "telegram"):
        marker = new_marker()
        markers.append(marker)
        person = Person(service, channel)
        await person.begin()
        await person.walk(path_to_summary(marker))
    await deliver_all(service)
    clock.advance(days=31)

    assert await service.purge_idle(timedelta(days=30)) == 2
    for marker in markers:
        assert await tables_holding(engine_of(service), marker) == []


@pytest.mark.parametrize("channel", ["web", "telegram"])
async def test_replies_of_a_report_are_kept_only_while_a_retry_can_arrive(
    service: IntakeService, clock: Clock, channel: str
) -> None:
    marker = new_marker()
    person = Person(service, channel)
    await person.begin()
    await person.walk(path_to_summary(marker))
    submitted = await person.send("choice", "submit")
    assert submitted.step == "submitted" and submitted.reference
    await deliver_all(service)
    # A Telegram reply is kept for a retried update without its words: its outbox row has them.
    expected = {"outbox.payload"} if channel == "telegram" else {"inbound_messages.reply"}
    reports = frozenset({"reports"})

    clock.advance(hours=23)
    assert await service.purge_kept_replies(timedelta(hours=24)) == 0
    assert set(await tables_holding(engine_of(service), marker, skip=reports)) >= expected
    # Within the window a retry of the summary's message is answered as before.
    retried = await person.send("choice", "submit", message_id=f"m{person.sent}")
    assert retried.replayed and retried.reference == submitted.reference

    clock.advance(hours=2)
    assert await service.purge_kept_replies(timedelta(hours=24)) > 0
    # The copies kept for retries are gone; the report (and the conversation it was made
    # from, whose retention is a separate decision) stays.
    held = set(await tables_holding(engine_of(service), marker))
    assert not held & {"inbound_messages.reply", "outbox.payload"}, held
    async with service.storage.unit_of_work() as uow:
        report = await uow.reports.get(submitted.reference)
    assert report is not None and marker in report.data["what_happened"]


@pytest.mark.parametrize("channel", ["web", "telegram"])
async def test_an_erasure_request_by_reference_keeps_nothing_in_any_table(
    service: IntakeService, channel: str
) -> None:
    """`intake reports erase REF`: the report and every copy of the conversation behind it."""
    from storage.staff import StaffStore
    from storage.staff_reports import erase_report, forget_erased_search_terms

    marker = new_marker()
    person = Person(service, channel)
    await person.begin()
    await person.walk(path_to_summary(marker))
    submitted = await person.send("choice", "submit")
    assert submitted.reference
    await deliver_all(service)
    assert "reports.data" in await tables_holding(engine_of(service), marker)

    store = StaffStore(engine_of(service))
    async with store.transaction() as tx:
        assert await erase_report(tx.db, submitted.reference)
        await forget_erased_search_terms(tx.db)

    assert await tables_holding(engine_of(service), marker) == []
