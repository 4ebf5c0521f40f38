"""Retention (`intake reports purge [--dry-run]`) and erasure (`intake reports erase REF`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from bot.cli import main
from bot.config import Settings
from bot.ports import StoredReport
from storage import create_storage
from storage.models import conversations, reports, transcript_entries
from storage.staff import StaffStore
from storage.staff_reports import ReportCase


async def _prepare(url: str) -> None:
    storage = await create_storage(url)
    now = datetime.now(UTC)
    plan = [
        # reference, days old, category, status
        ("OLDF-2222", 800, "feedback", "closed"),  # past feedback's 2 years: purged
        ("OLDS-2222", 800, "safeguarding_alert", "closed"),  # kept 6 years
        ("OLDO-2222", 3000, "feedback", "triaged"),  # open: never purged
        ("NEWF-2222", 10, "feedback", "closed"),
    ]
    try:
        for reference, days, category, status in plan:
            async with storage.unit_of_work() as uow:
                await uow.reports.add(
                    StoredReport(
                        reference=reference,
                        conversation_id=f"c-{reference}",
                        created_at=now - timedelta(days=days),
                        channel="web",
                        locale="en",
                        priority="routine",
                        data={"what_happened": "words"},
                    )
                )
                await uow.commit()
            async with StaffStore(storage.engine).transaction() as tx:
                await tx.reports.save_case(reference, ReportCase(status=status, category=category))
                await tx.db.execute(
                    conversations.insert().values(
                        id=f"c-{reference}",
                        channel="web",
                        state={"answers": {"contact": "pat@example.org"}},
                        status="done",
                        revision=1,
                        reference=reference,
                        created_at=now,
                        updated_at=now,
                    )
                )
                await tx.db.execute(
                    transcript_entries.insert().values(
                        conversation_id=f"c-{reference}",
                        seq=1,
                        role="user",
                        payload={"text": "pat@example.org"},
                        created_at=now,
                    )
                )
    finally:
        await storage.close()


async def _left(url: str) -> tuple[set[str], int, int, list[str]]:
    storage = await create_storage(url)
    try:
        async with storage.engine.connect() as connection:
            refs = {r[0] for r in await connection.execute(select(reports.c.reference))}
            convs = (
                await connection.execute(select(func.count()).select_from(conversations))
            ).scalar_one()
            lines = (
                await connection.execute(select(func.count()).select_from(transcript_entries))
            ).scalar_one()
            fts = [
                r[0] for r in await connection.execute(text("SELECT reference FROM reports_fts"))
            ]
            audit = [
                f"{r[0]} {r[1]}"
                for r in await connection.execute(text("SELECT action, target FROM staff_audit"))
            ]
    finally:
        await storage.close()
    assert sorted(fts) == sorted(refs)
    return refs, convs, lines, audit


def test_purge_by_category_with_a_dry_run_then_erasure(
    server_settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server_settings.database_url
    monkeypatch.setenv("INTAKE_DATABASE_URL", url)
    asyncio.run(_prepare(url))
    assert main(["reports", "purge", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would delete OLDF-2222" in out and "would delete 1 " in out
    assert asyncio.run(_left(url))[0] == {"OLDF-2222", "OLDS-2222", "OLDO-2222", "NEWF-2222"}
    assert main(["reports", "purge"]) == 0
    refs, convs, lines, audit = asyncio.run(_left(url))
    assert refs == {"OLDS-2222", "OLDO-2222", "NEWF-2222"}
    assert (convs, lines) == (3, 3)
    assert audit == ["report.purge OLDF-2222"]

    monkeypatch.setenv("INTAKE_RETENTION_DAYS", "safeguarding_alert=365")
    assert main(["reports", "purge"]) == 0
    assert asyncio.run(_left(url))[0] == {"OLDO-2222", "NEWF-2222"}

    assert main(["reports", "erase", "newf2222"]) == 0
    refs, convs, lines, audit = asyncio.run(_left(url))
    assert refs == {"OLDO-2222"} and (convs, lines) == (1, 1)
    assert audit[-1] == "report.erase NEWF-2222"
    assert main(["reports", "erase", "NEWF-2222"]) == 1
    monkeypatch.setenv("INTAKE_RETENTION_DAYS", "gossip=1")
    assert main(["reports", "purge"]) == 2
