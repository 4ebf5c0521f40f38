"""The queue's order, filters, keyset pages and search, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.ports import StoredReport
from storage import create_storage, upgrade
from storage.sqlalchemy_storage import SqlStorage
from storage.staff import StaffStore
from storage.staff_reports import QueueCursor, QueueFilters, ReportCase
from tests.storage.conftest import Clock, clock, database_url  # noqa: F401  (fixtures)

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[tuple[SqlStorage, StaffStore]]:  # noqa: F811
    await upgrade(database_url)
    storage = await create_storage(database_url)
    try:
        yield storage, StaffStore(storage.engine)
    finally:
        await storage.close()


async def add(
    storage: SqlStorage, reference: str, priority: str, minutes: int, **data: Any
) -> None:
    async with storage.unit_of_work() as uow:
        await uow.reports.add(
            StoredReport(
                reference=reference,
                conversation_id=f"c-{reference}",
                created_at=START + timedelta(minutes=minutes),
                channel=data.pop("channel", "web"),
                locale=data.pop("locale", "en"),
                priority=priority,  # type: ignore[arg-type]
                data=data,
            )
        )
        await uow.commit()


async def test_urgent_first_then_review_then_routine_oldest_first_in_keyset_pages(
    stores: tuple[SqlStorage, StaffStore],
) -> None:
    storage, staff = stores
    plan = [
        ("ROUT-0001", "routine", 1),
        ("URGE-0002", "urgent", 5),
        ("REVI-0003", "urgent_review", 2),
        ("URGE-0001", "urgent", 3),
        ("ROUT-0002", "routine", 0),
        ("REVI-0004", "urgent_review", 9),
        ("ROUT-0003", "routine", 4),
    ]
    for reference, priority, minutes in plan:
        await add(storage, reference, priority, minutes)
    seen: list[str] = []
    after: QueueCursor | None = None
    async with staff.transaction() as tx:
        while True:
            page = await tx.reports.queue(QueueFilters(), after=after, limit=2)
            seen += [item.reference for item in page.items]
            if page.next_cursor is None:
                break
            after = page.next_cursor
        assert await tx.reports.count(QueueFilters()) == 7
    assert seen == [
        "URGE-0001",
        "URGE-0002",
        "REVI-0003",
        "REVI-0004",
        "ROUT-0002",
        "ROUT-0001",
        "ROUT-0003",
    ]


async def test_filters_and_earlier_reports_about_the_same_place(
    stores: tuple[SqlStorage, StaffStore],
) -> None:
    storage, staff = stores
    await add(storage, "AAAA-0001", "routine", 0, location_id="1-100", service_type="care_home")
    await add(storage, "AAAA-0002", "routine", 60, location_id="1-100", service_type="care_home")
    await add(
        storage,
        "AAAA-0003",
        "urgent",
        120,
        location_id="1-100",
        service_type="care_home",
        channel="telegram",
        locale="cy",
    )
    await add(storage, "AAAA-0004", "routine", 0, location_id="1-200", service_type="gp")
    async with staff.transaction() as tx:
        await tx.reports.save_case("AAAA-0002", ReportCase(status="triaged", assignee_id=None))

        async def refs(**kwargs: Any) -> list[str]:
            page = await tx.reports.queue(QueueFilters(**kwargs))
            return [i.reference for i in page.items]

        assert await refs(service_type="gp") == ["AAAA-0004"]
        assert await refs(status="triaged") == ["AAAA-0002"]
        assert await refs(status="new", location_id="1-100") == ["AAAA-0003", "AAAA-0001"]
        assert await refs(channel="telegram") == ["AAAA-0003"]
        assert await refs(locale="cy") == ["AAAA-0003"]
        assert await refs(priority="urgent") == ["AAAA-0003"]
        assert await refs(created_from=START + timedelta(minutes=30)) == ["AAAA-0003", "AAAA-0002"]
        assert await refs(reference="AAAA-0004") == ["AAAA-0004"]
        assert await refs(assignee_id=0, service_type="gp") == ["AAAA-0004"]
        page = await tx.reports.queue(QueueFilters(location_id="1-100"))
        earlier = {i.reference: i.earlier_same_location for i in page.items}
    assert earlier == {"AAAA-0003": 2, "AAAA-0001": 0, "AAAA-0002": 1}


async def test_search_finds_words_in_the_free_text_and_forgets_erased_reports(
    stores: tuple[SqlStorage, StaffStore],
) -> None:
    storage, staff = stores
    await add(storage, "TEXT-0001", "routine", 0, what_happened="The nurses ignored the call bell")
    await add(storage, "TEXT-0002", "routine", 1, provider_text="Rosewood Lodge care home")
    await add(storage, "TEXT-0003", "routine", 2, what_happened="Lovely staff, kind and patient")
    async with staff.transaction() as tx:

        async def found(words: str) -> list[str]:
            return [i.reference for i in (await tx.reports.queue(QueueFilters(text=words))).items]

        assert await found("call bell") == ["TEXT-0001"]
        assert await found("rosewood") == ["TEXT-0002"]
        assert await found("kind staff") == ["TEXT-0003"]
        assert await found('"; DROP TABLE reports; --') == []
        assert await found("nothing like this") == []
        await tx.reports.delete_report("TEXT-0002")
        assert await found("rosewood") == []


async def test_search_finds_the_organisation_that_pointed_the_person_here(
    stores: tuple[SqlStorage, StaffStore],
) -> None:
    """`referral_name` is free text the person typed: search covers it like the account."""
    storage, staff = stores
    await add(
        storage,
        "REFE-0001",
        "routine",
        0,
        what_happened="Cold food again",
        referral="yes",
        referral_name="Healthwatch Kirklees",
    )
    await add(storage, "REFE-0002", "routine", 1, what_happened="Cold food", referral="no")
    async with staff.transaction() as tx:

        async def found(words: str) -> list[str]:
            return [i.reference for i in (await tx.reports.queue(QueueFilters(text=words))).items]

        assert await found("healthwatch kirklees") == ["REFE-0001"]
        assert await found("cold food") == ["REFE-0001", "REFE-0002"]
        await tx.reports.delete_report("REFE-0001")
        assert await found("healthwatch") == []


async def test_migration_0008_indexes_the_referral_of_reports_already_stored(
    database_url: str,  # noqa: F811
) -> None:
    """A report stored before 0008 (with a referral name) is found by it after the upgrade
    (on SQLite the FTS table is filled again; on PostgreSQL the index is rebuilt)."""
    await upgrade(database_url, "0006")
    storage = await create_storage(database_url)
    try:
        await add(storage, "OLDR-0001", "routine", 0, referral_name="Carers Trust Bristol")

        async def found(words: str) -> list[str]:
            async with StaffStore(storage.engine).transaction() as tx:
                page = await tx.reports.queue(QueueFilters(text=words))
                return [i.reference for i in page.items]

        await upgrade(database_url)
        assert await found("carers trust") == ["OLDR-0001"]
        await add(storage, "NEWR-0002", "routine", 1, referral_name="Carers Trust Leeds")
        assert await found("carers trust") == ["OLDR-0001", "NEWR-0002"]
    finally:
        await storage.close()
