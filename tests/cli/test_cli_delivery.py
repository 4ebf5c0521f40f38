"""`intake outbox ...`, `intake reports ack` and the delivery state in `intake reports show`."""

from __future__ import annotations

import json

from bot.ports import OutboxMessage
from storage import create_storage
from tests.cli.test_cli import db_url, intake, submit_report

__all__ = ["db_url"]  # the fixture, shared with test_cli


async def test_dead_letters_are_listed_retried_and_purged_without_their_bodies(
    db_url: str,
) -> None:
    reference = await submit_report(db_url, "What happened", risk="no")
    storage = await create_storage(db_url)
    try:
        dead = [
            OutboxMessage(
                "email",
                reference,
                {"kind": kind, "reference": reference, "to": "pat@example.org"},
                idempotency_key=f"{reference}:{kind}",
            )
            for kind in ("acknowledgement", "handoff")
        ]
        async with storage.unit_of_work() as uow:
            await uow.outbox.add(dead)
            for message in dead:
                assert message.id is not None
                await uow.outbox.mark_failed(message.id, error="gave_up_refused")
            await uow.commit()
    finally:
        await storage.close()

    listed = intake(db_url, "outbox", "list")
    assert listed.returncode == 0, listed.stderr
    assert "acknowledgement" in listed.stdout and "gave_up_refused" in listed.stdout
    assert "2 messages" in listed.stdout
    assert "pat@example.org" not in listed.stdout

    shown = json.loads(intake(db_url, "reports", "show", reference).stdout)
    assert [(d["kind"], d["status"]) for d in shown["deliveries"]] == [
        ("acknowledgement", "failed"),
        ("handoff", "failed"),
    ]
    assert shown["acknowledged_at"] is None

    assert "1 dead letters requeued" in intake(db_url, "outbox", "retry", str(dead[0].id)).stdout
    assert "1 dead letters deleted" in intake(db_url, "outbox", "purge", "--all").stdout
    remaining = intake(db_url, "outbox", "list", "--status", "all").stdout
    assert "handoff" not in remaining and "acknowledgement" in remaining


async def test_reports_ack_records_who_and_when_once(db_url: str) -> None:
    reference = await submit_report(db_url, "Someone is at risk", risk="yes")
    first = intake(db_url, "reports", "ack", reference, "--by", "duty@example.org")
    assert first.returncode == 0 and "duty@example.org" in first.stdout
    again = intake(db_url, "reports", "ack", reference, "--by", "other@example.org")
    assert "duty@example.org" in again.stdout  # the first acknowledgement stands
    shown = json.loads(intake(db_url, "reports", "show", reference).stdout)
    assert shown["acknowledged_by"] == "duty@example.org" and shown["acknowledged_at"]
    assert intake(db_url, "reports", "ack", "NOPE-NOPE").returncode == 1
