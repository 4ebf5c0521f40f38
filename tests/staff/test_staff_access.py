"""Roles hold: every route walked anonymously and as each role; an action and its audit row
commit together or not at all; the audit log refuses changes."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text

from bot.staff.application import routes
from bot.staff.web import Route
from storage.staff import StaffTx
from tests.staff.conftest import Browser, Staff

REFERENCE = "ABCD-2345"


def _path(route: Route) -> str:
    """A concrete path for the route template (placeholders get real values)."""
    path = route.path
    path = path.replace("{reference}", REFERENCE).replace("{token}", "not-a-token")
    path = path.replace("{username}", "olga")
    path = re.sub(r"\{(\w+):([\w|]+)\}", lambda m: m.group(2).split("|")[0], path)
    return "/staff" + path


async def _status(browser: Browser, route: Route) -> int:
    if route.method == "GET":
        return (await browser.get(_path(route), follow=False)).status
    token = ""
    if browser.last is not None and 'name="csrf_token"' in browser.last.text:
        token = browser.last.csrf
    page = await browser.post(_path(route), {"csrf_token": token, "value": "triaged"}, follow=False)
    return page.status


async def test_every_route_anonymously_and_as_each_role(staff: Staff) -> None:
    await staff.add_report(REFERENCE, priority="urgent")
    anonymous = await staff.browser()
    for route in routes():
        status = await _status(anonymous, route)
        if route.access.roles is None:
            assert status in (200, 303, 403, 404), (route.path, status)
        elif route.method == "GET":
            assert status == 303, (route.path, status)  # to the sign-in page
        else:
            assert status == 403, (route.path, status)
    by_role = {
        role: (await staff.signed_in(f"{role}1", role))[0] for role in ("officer", "lead", "admin")
    }
    await staff.create("olga")
    for role, browser in by_role.items():
        for route in routes():
            if route.access.roles is None or route.name == "logout":
                continue
            await browser.get("/staff/reports")  # a page with a fresh CSRF token
            status = await _status(browser, route)
            if role in route.access.roles:
                # Reached the handler (400: that status move was already made by another role).
                assert status in (200, 303, 400), (role, route.method, route.path, status)
            else:
                assert status == 403, (role, route.method, route.path, status)


async def test_an_action_without_its_audit_row_does_not_happen(
    staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    await staff.add_report(REFERENCE, priority="urgent")
    browser, _ = await staff.signed_in("olive")
    page = await browser.get(f"/staff/reports/{REFERENCE}")

    async def failing_audit(self: StaffTx, action: str, **kwargs: object) -> None:
        raise RuntimeError("the audit log is unavailable")

    monkeypatch.setattr(StaffTx, "audit", failing_audit)
    failed = await browser.post(
        f"/staff/reports/{REFERENCE}/status", {"csrf_token": page.csrf, "value": "triaged"}
    )
    assert failed.status == 500
    monkeypatch.undo()
    async with staff.store.transaction() as tx:
        assert (await tx.reports.case(REFERENCE)).status == "new"
        assert await tx.reports.events(REFERENCE) == []


async def test_the_audit_log_is_append_only(staff: Staff) -> None:
    await staff.signed_in("olive")
    for statement in ("UPDATE staff_audit SET action = 'x'", "DELETE FROM staff_audit"):
        with pytest.raises(Exception, match="append-only"):
            async with staff.store.transaction() as tx:
                await tx.db.connection.execute(text(statement))
    assert "sign_in" in await staff.audit_actions()
