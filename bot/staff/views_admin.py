"""Admin pages: staff accounts (create, reset, disable) and the audit log (view, export)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

from aiohttp import web

from bot.staff.accounts import AccountError, add_account, disable_account, reset_account
from bot.staff.web import (
    ADMINS,
    STAFF_SETTINGS,
    STAFF_STORE,
    Access,
    Route,
    client_ip,
    principal,
    render,
)
from storage.staff import ROLES

AUDIT_PAGE = 100


async def accounts(request: web.Request) -> web.StreamResponse:
    who = principal(request)
    async with request.app[STAFF_STORE].transaction() as tx:
        listed = await tx.accounts()
        await tx.audit("accounts.view", account=who.account, ip=client_ip(request))
    return render(
        request,
        "admin_accounts.html",
        {"accounts": listed, "roles": ROLES, "errors": {}, "form": {}},
    )


async def create(request: web.Request) -> web.StreamResponse:
    who = principal(request)
    form = await request.post()
    values = {k: str(form.get(k, "")).strip()[:200] for k in ("username", "display_name", "role")}
    async with request.app[STAFF_STORE].transaction() as tx:
        try:
            link = await add_account(
                tx,
                request.app[STAFF_SETTINGS],
                username=values["username"],
                display_name=values["display_name"],
                role=values["role"],
                by=who.account,
                ip=client_ip(request),
            )
        except AccountError as error:
            listed = await tx.accounts()
            return render(
                request,
                "admin_accounts.html",
                {
                    "accounts": listed,
                    "roles": ROLES,
                    "errors": {"form": str(error)},
                    "form": values,
                },
                status=400,
            )
    return render(request, "admin_link.html", {"link": link, "action": "created"})


async def account_action(request: web.Request) -> web.StreamResponse:
    who = principal(request)
    action = request.match_info["action"]
    username = request.match_info["username"]
    async with request.app[STAFF_STORE].transaction() as tx:
        try:
            if action == "disable":
                await disable_account(tx, username=username, by=who.account, ip=client_ip(request))
                link = None
            else:
                link = await reset_account(
                    tx,
                    request.app[STAFF_SETTINGS],
                    username=username,
                    by=who.account,
                    ip=client_ip(request),
                )
        except AccountError as error:
            raise web.HTTPNotFound(text=str(error)) from None
    if link is None:
        raise web.HTTPSeeOther("/staff/admin/accounts")
    return render(request, "admin_link.html", {"link": link, "action": "reset"})


async def audit(request: web.Request) -> web.StreamResponse:
    who = principal(request)
    before = request.query.get("before", "")
    target = request.query.get("target", "").strip()[:64] or None
    async with request.app[STAFF_STORE].transaction() as tx:
        entries = await tx.audit_entries(
            before_id=int(before) if before.isdigit() else None, limit=AUDIT_PAGE, target=target
        )
        await tx.audit(
            "audit.view", account=who.account, detail={"target": target}, ip=client_ip(request)
        )
    older = entries[-1].id if len(entries) == AUDIT_PAGE else None
    return render(
        request, "admin_audit.html", {"entries": entries, "older": older, "target": target or ""}
    )


async def audit_export(request: web.Request) -> web.StreamResponse:
    who = principal(request)
    fmt = request.match_info["format"]
    rows = []
    async with request.app[STAFF_STORE].transaction() as tx:
        before: int | None = None
        while True:
            batch = await tx.audit_entries(before_id=before, limit=1000)
            rows.extend(batch)
            if len(batch) < 1000:
                break
            before = batch[-1].id
        await tx.audit(
            "audit.export",
            account=who.account,
            detail={"format": fmt, "rows": len(rows)},
            ip=client_ip(request),
        )
    records = [
        {
            "id": e.id,
            "at": e.at.isoformat(),
            "account_id": e.account_id,
            "username": e.username,
            "action": e.action,
            "target": e.target,
            "detail": json.dumps(e.detail, ensure_ascii=False, sort_keys=True),
            "ip": e.ip,
        }
        for e in reversed(rows)
    ]
    if fmt == "jsonl":
        body = "".join(
            json.dumps({**r, "detail": json.loads(str(r["detail"]))}, ensure_ascii=False) + "\n"
            for r in records
        )
        content_type = "application/x-ndjson"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=list(records[0]) if records else ["id"], lineterminator="\r\n"
        )
        writer.writeheader()
        writer.writerows(records)
        body = buffer.getvalue()
        content_type = "text/csv"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    return web.Response(
        text=body,
        content_type=content_type,
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.{fmt}"'},
    )


ROUTES = [
    Route("GET", "/admin/accounts", accounts, Access(ADMINS), "accounts"),
    Route("POST", "/admin/accounts", create, Access(ADMINS), "account_create"),
    Route(
        "POST",
        "/admin/accounts/{username}/{action:disable|reset}",
        account_action,
        Access(ADMINS),
        "account_action",
    ),
    Route("GET", "/admin/audit", audit, Access(ADMINS), "audit"),
    Route("GET", "/admin/audit.{format:csv|jsonl}", audit_export, Access(ADMINS), "audit_export"),
]
