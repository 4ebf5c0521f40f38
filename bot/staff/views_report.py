"""One report: every answer, the transcript, the matched location, the case (status,
category, assignee, notes) with who and when, the clocks, and contact details that stay
hidden until an officer chooses to reveal them (the reveal is audited)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot.intake.reference import normalise_reference
from bot.intake.reports import EXPORT_FIELDS
from bot.staff.web import EVERYONE, STAFF_STORE, Access, Route, client_ip, principal, render
from bot.staff.workflow import (
    CATEGORIES,
    NEXT_STATUSES,
    PRIORITIES,
    STATUSES,
    can_move,
    describe_duration,
    same_working_day_deadline,
)
from storage.staff import StaffTx

HIDDEN = "[contact details hidden]"
NOTE_LIMIT = 5000
#: Answers shown in their own panels, not in the list of answers.
NOT_IN_ANSWERS = {"reference", "created_at", "channel", "locale", "priority", "contact"}


def _contact_values(data: dict[str, Any]) -> list[str]:
    contact = data.get("contact") or {}
    if not isinstance(contact, dict):
        return []
    values = [str(v) for v in contact.values() if v and len(str(v)) >= 3]
    return sorted(values, key=len, reverse=True)


def _hide(text: str, secrets: list[str]) -> str:
    for value in secrets:
        text = text.replace(value, HIDDEN)
    return text


async def _page(
    request: web.Request, tx: StaffTx, reference: str, *, revealed: bool
) -> dict[str, Any]:
    detail = await tx.reports.detail(reference)
    if detail is None:
        raise web.HTTPNotFound(text="There is no report with that reference.")
    events = await tx.reports.events(reference)
    accounts = await tx.accounts()
    names = {a.id: a.display_name for a in accounts}
    secrets = [] if revealed else _contact_values(detail.data)
    transcript = [
        {
            "role": line["role"],
            "text": _hide(str(line["payload"].get("text") or ""), secrets),
            "at": line["created_at"],
        }
        for line in detail.transcript
    ]
    answers = [
        (name, _hide(_show(detail.data.get(name)), secrets))
        for name in EXPORT_FIELDS
        if name not in NOT_IN_ANSWERS and detail.data.get(name) not in (None, "", [])
    ]
    now = datetime.now(UTC)
    deadline = same_working_day_deadline(detail.created_at)
    return {
        "urgent": detail.priority in ("urgent", "urgent_review"),
        "acknowledgement": await tx.reports.acknowledgement(reference),
        "deliveries": await tx.reports.deliveries(reference),
        "report": detail,
        "case": detail.case,
        "answers": answers,
        "transcript": transcript,
        "location": detail.location,
        "contact": detail.data.get("contact") if revealed else None,
        "has_contact": bool(detail.data.get("contact")),
        "events": [
            {"event": e, "who": names.get(e.account_id or -1, "(removed account)")} for e in events
        ],
        "assignee": names.get(detail.case.assignee_id or -1),
        "age": describe_duration(now - detail.created_at),
        "deadline": deadline,
        "overdue": now > deadline and detail.case.status in ("new", "triaged"),
        "left": describe_duration(deadline - now),
        "next_statuses": NEXT_STATUSES.get(detail.case.status, ()),
        "statuses": STATUSES,
        "categories": CATEGORIES,
        "priorities": PRIORITIES,
        "accounts": [a for a in accounts if a.disabled_at is None],
        "errors": {},
    }


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _reference(request: web.Request) -> str:
    return normalise_reference(request.match_info["reference"])[:32]


async def show(request: web.Request) -> web.StreamResponse:
    who = principal(request)
    reference = _reference(request)
    async with request.app[STAFF_STORE].transaction() as tx:
        context = await _page(request, tx, reference, revealed=False)
        await tx.audit("report.view", account=who.account, target=reference, ip=client_ip(request))
    return render(request, "report.html", {**context, "message": request.query.get("done")})


async def reveal(request: web.Request) -> web.StreamResponse:
    """Shown in this response only; a reload hides them again."""
    who = principal(request)
    reference = _reference(request)
    async with request.app[STAFF_STORE].transaction() as tx:
        context = await _page(request, tx, reference, revealed=True)
        await tx.audit(
            "report.reveal_contact", account=who.account, target=reference, ip=client_ip(request)
        )
    return render(request, "report.html", {**context, "message": None})


async def acknowledge(request: web.Request) -> web.StreamResponse:
    """Take charge of an urgent report: stops its escalation, as the alert's link does. The
    first acknowledgement stands; the audit row is written in the same transaction."""
    who = principal(request)
    reference = _reference(request)
    async with request.app[STAFF_STORE].transaction() as tx:
        if await tx.reports.detail(reference) is None:
            raise web.HTTPNotFound(text="There is no report with that reference.")
        ack = await tx.reports.acknowledge(
            reference, by=f"staff:{who.account.username}", at=tx.now()
        )
        await tx.audit(
            "report.acknowledge",
            account=who.account,
            target=reference,
            detail={"by": ack.by if ack else None},
            ip=client_ip(request),
        )
    raise web.HTTPSeeOther(f"/staff/reports/{reference}?done=acknowledge")


async def change(request: web.Request) -> web.StreamResponse:
    """Status, category, assignee or a note: the change, its history line and its audit row
    in one transaction."""
    who = principal(request)
    reference = _reference(request)
    what = request.match_info["what"]
    form = await request.post()
    value = str(form.get("value", "")).strip()
    async with request.app[STAFF_STORE].transaction() as tx:
        if await tx.reports.detail(reference) is None:
            raise web.HTTPNotFound(text="There is no report with that reference.")
        case = await tx.reports.case(reference)
        detail: dict[str, Any] = {}
        if what == "status":
            if not can_move(case.status, value):
                return await _error(request, tx, reference, "status", "Choose the next status")
            detail = {"from": case.status, "to": value}
            await tx.reports.save_case(reference, replace(case, status=value))
            await tx.reports.add_event(
                reference, account_id=who.account.id, kind="status", value=value
            )
        elif what == "category":
            if value not in CATEGORIES:
                return await _error(request, tx, reference, "category", "Choose a category")
            detail = {"from": case.category, "to": value}
            await tx.reports.save_case(reference, replace(case, category=value))
            await tx.reports.add_event(
                reference, account_id=who.account.id, kind="category", value=value
            )
        elif what == "assignee":
            assignee = await tx.account(int(value)) if value.isdigit() else None
            if value != "nobody" and (assignee is None or assignee.disabled_at is not None):
                return await _error(request, tx, reference, "assignee", "Choose a person")
            new_id = assignee.id if assignee else None
            detail = {"from": case.assignee_id, "to": new_id}
            await tx.reports.save_case(reference, replace(case, assignee_id=new_id))
            await tx.reports.add_event(
                reference,
                account_id=who.account.id,
                kind="assignee",
                value=assignee.username if assignee else None,
            )
        elif what == "note":
            note = str(form.get("note", "")).strip()
            if not note or len(note) > NOTE_LIMIT:
                return await _error(
                    request, tx, reference, "note", f"Write a note of up to {NOTE_LIMIT} characters"
                )
            await tx.reports.add_event(reference, account_id=who.account.id, kind="note", note=note)
        else:
            raise web.HTTPNotFound()
        # Never the note's words: a note may name people.
        await tx.audit(
            f"report.{what}",
            account=who.account,
            target=reference,
            detail=detail,
            ip=client_ip(request),
        )
    raise web.HTTPSeeOther(f"/staff/reports/{reference}?done={what}")


async def _error(
    request: web.Request, tx: StaffTx, reference: str, field: str, message: str
) -> web.Response:
    context = await _page(request, tx, reference, revealed=False)
    return render(
        request,
        "report.html",
        {**context, "message": None, "errors": {field: message}},
        status=400,
    )


ROUTES = [
    Route("GET", "/reports/{reference}", show, Access(EVERYONE), "report"),
    Route("POST", "/reports/{reference}/reveal", reveal, Access(EVERYONE), "reveal"),
    Route("POST", "/reports/{reference}/acknowledge", acknowledge, Access(EVERYONE), "acknowledge"),
    Route(
        "POST",
        "/reports/{reference}/{what:status|category|assignee|note}",
        change,
        Access(EVERYONE),
        "change",
    ),
]
