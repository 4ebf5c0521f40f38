"""How long reports are kept, per category, and `intake reports purge|erase`.

INTAKE_RETENTION_DAYS overrides the defaults, e.g. "feedback=365,default=1095". A report is
purged only once its case is closed and it is older than its category's period; every purge
and erasure writes its audit row in the same transaction as the deletion.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping
from typing import Any

from bot.config import ConfigError, Settings
from bot.staff.workflow import CATEGORIES

#: Days to keep a closed case, by category. Safeguarding records are kept longest.
DEFAULT_RETENTION_DAYS: dict[str, int] = {
    "safeguarding_alert": 6 * 365,
    "safeguarding_concern": 6 * 365,
    "whistleblowing": 6 * 365,
    "complaint_signpost": 3 * 365,
    "feedback": 2 * 365,
    "not_ours": 365,
    "default": 3 * 365,
}


def retention_from_env(env: Mapping[str, str] | None = None) -> dict[str, int]:
    env = os.environ if env is None else env
    days = dict(DEFAULT_RETENTION_DAYS)
    for entry in (env.get("INTAKE_RETENTION_DAYS") or "").split(","):
        if not entry.strip():
            continue
        name, _, value = entry.partition("=")
        name = name.strip()
        if name not in CATEGORIES and name != "default":
            raise ConfigError(f"INTAKE_RETENTION_DAYS names an unknown category: {name!r}")
        try:
            days[name] = int(value)
        except ValueError as exc:
            raise ConfigError(f"INTAKE_RETENTION_DAYS: {name} needs a number of days") from exc
        if days[name] < 30:
            raise ConfigError(f"INTAKE_RETENTION_DAYS: {name} must be at least 30 days")
    return days


def add_commands(reports: Any) -> None:
    purge = reports.add_parser(
        "purge", help="delete closed reports older than their category's retention period"
    )
    purge.add_argument("--dry-run", action="store_true", help="list what would go; change nothing")
    purge.set_defaults(handler=lambda s, a: asyncio.run(_purge(s, a)))
    erase = reports.add_parser(
        "erase", help="a person's erasure request: delete one report everywhere"
    )
    erase.add_argument("reference")
    erase.set_defaults(handler=lambda s, a: asyncio.run(_erase(s, a)))


async def _store(settings: Settings) -> Any:
    from storage.engine import create_engine
    from storage.migrate import upgrade
    from storage.staff import StaffStore

    await upgrade(settings.database_url)
    return StaffStore(create_engine(settings.database_url, pool_size=1))


async def _purge(settings: Settings, args: argparse.Namespace) -> int:
    from storage.staff_reports import erase_report, forget_erased_search_terms, purge_candidates

    try:
        retention = retention_from_env()
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    store = await _store(settings)
    total = 0
    try:
        while True:
            async with store.transaction() as tx:
                batch = await purge_candidates(tx.db, retention, now=tx.now(), limit=200)
                if args.dry_run:
                    for c in batch:
                        print(
                            f"would delete {c.reference} ({c.category or 'uncategorised'}, received {c.created_at:%Y-%m-%d})"
                        )
                    total = len(batch)
                    break
                for c in batch:
                    await erase_report(tx.db, c.reference)
                    await tx.audit(
                        "report.purge",
                        account=None,
                        username="(retention)",
                        target=c.reference,
                        detail={"category": c.category},
                    )
                if batch:
                    await forget_erased_search_terms(tx.db)
                total += len(batch)
            if not batch:
                break
    finally:
        await store.engine.dispose()
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {total} closed reports past their retention period")
    return 0


async def _erase(settings: Settings, args: argparse.Namespace) -> int:
    from bot.intake.reference import normalise_reference
    from storage.staff_reports import erase_report, forget_erased_search_terms

    reference = normalise_reference(args.reference)
    store = await _store(settings)
    try:
        async with store.transaction() as tx:
            erased = await erase_report(tx.db, reference)
            if erased:
                await forget_erased_search_terms(tx.db)
                await tx.audit(
                    "report.erase", account=None, username="(command line)", target=reference
                )
    finally:
        await store.engine.dispose()
    if not erased:
        print(f"no report with reference {reference}", file=sys.stderr)
        return 1
    print(
        f"report {reference} is erased: the report, its case and notes, the conversation and its transcript"
    )
    return 0
