"""`intake outbox list|retry|purge` and `intake reports ack`: the operator's side of delivery.

Kept apart from bot/cli.py so that the delivery commands live with the delivery code; cli.py
only calls `add_commands`. Nothing printed here contains a message body or an address: a
message is shown by id, topic, kind, reference, attempts and its error kind.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bot.config import Settings
from bot.ports import OutboxMessage, Storage


async def _open(settings: Settings) -> Any:  # a SqlStorage; bot/ stays free of storage imports
    from storage.migrate import upgrade
    from storage.sqlalchemy_storage import create_storage

    await upgrade(settings.database_url)
    return await create_storage(settings.database_url)


def add_commands(sub: Any, reports: Any) -> None:
    """Register `outbox ...` on the top-level subparsers and `ack` under `reports`."""
    outbox = sub.add_parser("outbox", help="outgoing messages and dead letters").add_subparsers(
        title="outbox commands"
    )
    lst = outbox.add_parser("list", help="messages, newest first (default: dead letters)")
    lst.add_argument("--status", choices=("failed", "pending", "done", "all"), default="failed")
    lst.add_argument("--topic", default=None)
    lst.add_argument("--limit", type=int, default=50)
    lst.set_defaults(handler=lambda s, a: asyncio.run(outbox_list(s, a.status, a.topic, a.limit)))
    for name, helptext in (
        ("retry", "send dead letters again (fresh attempts)"),
        ("purge", "delete dead letters"),
    ):
        command = outbox.add_parser(name, help=helptext)
        target = command.add_mutually_exclusive_group(required=True)
        target.add_argument("ids", nargs="*", type=int, default=[], help="message ids")
        target.add_argument("--all", action="store_true", help="every dead letter")
        command.set_defaults(
            handler=lambda s, a, name=name: asyncio.run(
                outbox_change(s, name, None if a.all else a.ids)
            )
        )
    ack = reports.add_parser("ack", help="acknowledge an urgent report (stops its escalation)")
    ack.add_argument("reference")
    ack.add_argument("--by", default=None, help="who (default: the logged-in user)")
    ack.set_defaults(handler=lambda s, a: asyncio.run(reports_ack(s, a.reference, a.by)))


def describe(message: OutboxMessage) -> dict[str, Any]:
    """What may be shown of a message: never its body or address."""
    return {
        "id": message.id,
        "topic": message.topic,
        "kind": message.payload.get("kind"),
        "reference": message.payload.get("reference"),
        "status": message.status,
        "attempts": message.attempts,
        "created_at": message.created_at.isoformat() if message.created_at else None,
        "next_attempt_at": (
            message.available_at.isoformat()
            if message.available_at and message.status == "pending"
            else None
        ),
        "last_error": message.last_error,
    }


async def outbox_list(settings: Settings, status: str, topic: str | None, limit: int) -> int:
    storage = await _open(settings)
    try:
        async with storage.unit_of_work() as uow:
            messages = await uow.outbox.list(
                status=None if status == "all" else status, topic=topic, limit=limit
            )
    finally:
        await storage.close()
    print(
        f"{'ID':>8} {'TOPIC':<16} {'KIND':<20} {'REFERENCE':<10} {'STATUS':<8} {'TRIES':>5} ERROR"
    )
    for message in messages:
        row = describe(message)
        print(
            f"{row['id']:>8} {row['topic']:<16} {row['kind'] or '':<20} "
            f"{row['reference'] or '':<10} {row['status']:<8} {row['attempts']:>5} "
            f"{row['last_error'] or ''}"
        )
    print(f"{len(messages)} messages")
    return 0


async def outbox_change(settings: Settings, action: str, ids: Sequence[int] | None) -> int:
    storage = await _open(settings)
    try:
        async with storage.unit_of_work() as uow:
            if action == "retry":
                count = await uow.outbox.requeue(ids)
            else:
                count = await uow.outbox.purge(ids)
            await uow.commit()
    finally:
        await storage.close()
    verb = "requeued" if action == "retry" else "deleted"
    print(f"{count} dead letters {verb}")
    return 0


async def reports_ack(settings: Settings, reference: str, by: str | None) -> int:
    from bot.intake.reference import normalise_reference

    who = by or f"cli:{getpass.getuser()}"
    storage = await _open(settings)
    try:
        async with storage.unit_of_work() as uow:
            ack = await uow.reports.acknowledge(
                normalise_reference(reference), by=who, at=datetime.now(UTC)
            )
            await uow.commit()
    finally:
        await storage.close()
    if ack is None:
        print(f"no report with reference {reference}", file=sys.stderr)
        return 1
    print(f"acknowledged by {ack.by} at {ack.at:%Y-%m-%d %H:%M} UTC")
    return 0


async def delivery_state(storage: Storage, reference: str) -> dict[str, Any]:
    """For `intake reports show`: the acknowledgement and each outgoing message's state."""
    async with storage.unit_of_work() as uow:
        ack = await uow.reports.acknowledgement(reference)
        messages = await uow.outbox.list(key_prefix=f"{reference}:", limit=1000)
    return {
        "acknowledged_at": ack.at.isoformat() if ack else None,
        "acknowledged_by": ack.by if ack else None,
        "deliveries": [describe(m) for m in reversed(messages)],
    }


def print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


__all__ = ["add_commands", "delivery_state"]
