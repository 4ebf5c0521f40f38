"""The queue: urgent first, then urgent review, then routine, oldest first; filters, search,
keyset pages; and exports of the filtered queue (audited)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bot.intake.reference import normalise_reference
from bot.staff.web import (
    EVERYONE,
    LEADS,
    STAFF_STORE,
    Access,
    Route,
    client_ip,
    principal,
    render,
)
from bot.staff.workflow import (
    CATEGORIES,
    CHANNELS,
    PRIORITIES,
    STATUSES,
    describe_duration,
    same_working_day_deadline,
)
from storage.staff_reports import QueueCursor, QueueFilters

PAGE_SIZE = 25
FILTER_NAMES = (
    "status",
    "priority",
    "service_type",
    "location_id",
    "local_authority",
    "from",
    "to",
    "locale",
    "channel",
    "assignee",
    "q",
)
#: A reference as staff type it: with its dash, or eight characters with a digit among them
#: (an eight-letter word is searched as text).
_REFERENCE = re.compile(r"^[A-HJKMNP-Z2-9]{4}-[A-HJKMNP-Z2-9]{4}$|^(?=.*[2-9])[A-HJKMNP-Z2-9]{8}$")


def looks_like_reference(words: str) -> bool:
    return bool(_REFERENCE.match(words.strip().upper()))


def _date(raw: str) -> datetime | None:
    try:
        return datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None


def parse_filters(query: Any) -> tuple[QueueFilters, dict[str, str]]:
    """The filters from the query string, and the values to show back in the form."""
    shown = {name: str(query.get(name, "")).strip()[:200] for name in FILTER_NAMES}
    assignee: int | None = None
    if shown["assignee"] == "nobody":
        assignee = 0
    elif shown["assignee"].isdigit():
        assignee = int(shown["assignee"])
    reference = text = None
    words = shown["q"]
    if words:
        if looks_like_reference(words):
            reference = normalise_reference(words)
        else:
            text = words
    until = _date(shown["to"])
    filters = QueueFilters(
        status=shown["status"] if shown["status"] in STATUSES else None,
        priority=shown["priority"] if shown["priority"] in PRIORITIES else None,
        service_type=shown["service_type"] or None,
        location_id=shown["location_id"] or None,
        local_authority=shown["local_authority"] or None,
        created_from=_date(shown["from"]),
        created_before=until + timedelta(days=1) if until else None,
        locale=shown["locale"] or None,
        channel=shown["channel"] if shown["channel"] in CHANNELS else None,
        assignee_id=assignee,
        reference=reference,
        text=text,
    )
    return filters, shown


def encode_cursor(cursor: QueueCursor) -> str:
    return f"{cursor.rank}~{cursor.created_at.isoformat()}~{cursor.reference}"


def decode_cursor(raw: str | None) -> QueueCursor | None:
    if not raw:
        return None
    try:
        rank, moment, reference = raw.split("~", 2)
        return QueueCursor(int(rank), datetime.fromisoformat(moment), reference[:32])
    except ValueError:
        return None


def audit_filters(shown: dict[str, str]) -> dict[str, Any]:
    """What was asked for, without the words searched (they may name a person)."""
    detail: dict[str, Any] = {k: v for k, v in shown.items() if v and k != "q"}
    if shown.get("q"):
        detail["searched"] = True
    return detail


async def queue(request: web.Request) -> web.StreamResponse:
    who = principal(request)
    filters, shown = parse_filters(request.query)
    after = decode_cursor(request.query.get("after"))
    async with request.app[STAFF_STORE].transaction() as tx:
        page = await tx.reports.queue(filters, after=after, limit=PAGE_SIZE)
        total = await tx.reports.count(filters)
        accounts = await tx.accounts()
        await tx.audit(
            "queue.view", account=who.account, detail=audit_filters(shown), ip=client_ip(request)
        )
    names = {a.id: a.display_name for a in accounts}
    now = datetime.now(UTC)
    rows = []
    for item in page.items:
        deadline = same_working_day_deadline(item.created_at)
        rows.append(
            {
                "item": item,
                "age": describe_duration(now - item.created_at),
                "overdue": item.priority == "urgent"
                and item.status in ("new", "triaged")
                and now > deadline,
                "assignee": names.get(item.assignee_id or -1),
            }
        )
    kept = {k: v for k, v in shown.items() if v}
    next_url = (
        "/staff/reports?" + urlencode({**kept, "after": encode_cursor(page.next_cursor)})
        if page.next_cursor
        else None
    )
    return render(
        request,
        "queue.html",
        {
            "rows": rows,
            "total": total,
            "shown": shown,
            "next_url": next_url,
            "first_url": "/staff/reports?" + urlencode(kept) if after else None,
            "export_query": urlencode(kept),
            "statuses": STATUSES,
            "priorities": PRIORITIES,
            "categories": CATEGORIES,
            "channels": CHANNELS,
            "accounts": [a for a in accounts if a.disabled_at is None],
        },
    )


EXPORT_COLUMNS = (
    "reference",
    "created_at",
    "priority",
    "status",
    "category",
    "channel",
    "locale",
    "service_type",
    "service_name",
    "location_id",
    "assignee",
)


async def export(request: web.Request) -> web.StreamResponse:
    """The filtered queue as CSV or JSON lines: the case fields, never contact details."""
    who = principal(request)
    fmt = request.match_info["format"]
    filters, shown = parse_filters(request.query)
    records: list[dict[str, Any]] = []
    async with request.app[STAFF_STORE].transaction() as tx:
        names = {a.id: a.username for a in await tx.accounts()}
        after: QueueCursor | None = None
        while True:
            page = await tx.reports.queue(filters, after=after, limit=500)
            for item in page.items:
                records.append(
                    {
                        "reference": item.reference,
                        "created_at": item.created_at.isoformat(),
                        "priority": item.priority,
                        "status": item.status,
                        "category": item.category,
                        "channel": item.channel,
                        "locale": item.locale,
                        "service_type": item.service_type,
                        "service_name": item.service_name,
                        "location_id": item.location_id,
                        "assignee": names.get(item.assignee_id or -1),
                    }
                )
            if page.next_cursor is None:
                break
            after = page.next_cursor
        await tx.audit(
            "reports.export",
            account=who.account,
            detail={**audit_filters(shown), "format": fmt, "rows": len(records)},
            ip=client_ip(request),
        )
    if fmt == "jsonl":
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        content_type = "application/x-ndjson"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        for record in records:
            writer.writerow({k: _cell(v) for k, v in record.items()})
        body = buffer.getvalue()
        content_type = "text/csv"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    return web.Response(
        text=body,
        content_type=content_type,
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="reports-{stamp}.{fmt}"'},
    )


def _cell(value: Any) -> str:
    """Spreadsheets run cells that start like formulas: quote them (CSV injection)."""
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(("=", "+", "-", "@", "\t", "\r")) else text


ROUTES = [
    Route("GET", "/reports", queue, Access(EVERYONE), "queue"),
    Route("GET", "/reports.{format:csv|jsonl}", export, Access(LEADS), "export"),
]
