"""The officer's walk in a real browser (Chromium through Playwright), with axe-core on every
staff page: an admin creates an officer; the officer enrols the security-code app, signs in,
finds the urgent report at the top, reveals the contact, refers it, adds a note, assigns it,
closes it; the audit log shows each step; a browser without a session is refused everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyotp
import pytest

from tests.e2e.conftest import axe_script, axe_violations, browser, new_page  # noqa: F401
from tests.staff.conftest import PASSWORD, Staff, StartStaff, start_staff  # noqa: F401

pytestmark = pytest.mark.browser

CONTACT_EMAIL = "pat@example.org"


async def no_serious_axe_issue(page: Any, script: Path, where: str) -> None:
    found = await axe_violations(page, script)
    assert not found, f"{where}: " + "\n".join(
        f"{v['id']}: {v['help']} {v['nodes']}" for v in found
    )
    page.watch.assert_clean()


async def enrol(page: Any, staff: Staff, url: str, script: Path) -> str:
    await page.goto(url)
    await no_serious_axe_issue(page, script, "enrolment")
    assert await page.locator("svg.segno").count() == 1  # the QR code, inline
    secret = await page.locator("input[name=secret]").get_attribute("value")
    await page.fill("#password", PASSWORD)
    await page.fill("#confirm", PASSWORD)
    await page.fill("#code", pyotp.TOTP(secret).at(staff.clock()))
    await page.click("text=Finish setting up")
    await page.wait_for_selector("text=Your account is ready")
    return str(secret)


async def sign_in(page: Any, staff: Staff, username: str, secret: str, script: Path) -> None:
    await page.goto(staff.server.base_url + "/staff/login")
    await no_serious_axe_issue(page, script, "sign-in")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.fill("#code", staff.code(secret))
    await page.click("button:has-text('Sign in')")
    await page.wait_for_selector("text=Sign out")


async def test_officer_walk_in_a_real_browser(
    start_staff: StartStaff,  # noqa: F811
    new_page: Any,  # noqa: F811
    axe_script: Path,  # noqa: F811
) -> None:
    staff = await start_staff()
    base = staff.server.base_url
    await staff.add_report("ROUT-6666", priority="routine", minutes_ago=300)
    await staff.add_report(
        "URGE-6666",
        priority="urgent",
        minutes_ago=20,
        data={
            "what_happened": "Nobody came when she fell",
            "location_id": "1-900000001",
            "contact": {"name": "Pat Example", "email": CONTACT_EMAIL},
        },
    )
    # axe is injected as a script, which our CSP rightly refuses: bypassed for the test tool.
    # The first admin, as `intake staff add` makes them.
    admin_page = await new_page(bypass_csp=True)
    admin_secret = await enrol(
        admin_page, staff, base + await staff.create("ada", "admin"), axe_script
    )
    await sign_in(admin_page, staff, "ada", admin_secret, axe_script)

    # The admin creates an officer on the accounts page.
    await admin_page.goto(base + "/staff/admin/accounts")
    await no_serious_axe_issue(admin_page, axe_script, "accounts")
    await admin_page.fill("#username", "olivia")
    await admin_page.fill("#display_name", "Olivia Officer")
    await admin_page.select_option("#role", "officer")
    await admin_page.click("button:has-text('Add account')")
    link = await admin_page.locator("#enrolment-link").inner_text()
    await no_serious_axe_issue(admin_page, axe_script, "set-up link")
    enrol_path = "/staff/" + link.split("/staff/", 1)[1]

    # The officer, in another browser.
    page = await new_page(bypass_csp=True)
    secret = await enrol(page, staff, base + enrol_path, axe_script)
    await sign_in(page, staff, "olivia", secret, axe_script)
    await page.goto(base + "/staff/reports")
    await no_serious_axe_issue(page, axe_script, "queue")
    first = page.locator("#queue tbody tr").first
    assert await first.get_attribute("data-reference") == "URGE-6666"
    await first.locator("a").click()
    await page.wait_for_selector("h1:has-text('URGE-6666')")
    await no_serious_axe_issue(page, axe_script, "report")
    assert CONTACT_EMAIL not in await page.content()
    await page.click("#reveal")
    await page.wait_for_selector(f"text={CONTACT_EMAIL}")
    await no_serious_axe_issue(page, axe_script, "report with contact")

    async def move(status_label: str) -> None:
        await page.get_by_label(status_label, exact=True).check()
        await page.click("button:has-text('Change status')")
        await page.wait_for_selector(f"#current-status:has-text('{status_label}')")

    await move("Triaged")
    await move("Referred to police")
    await page.fill("#note", "Police informed, log 4411.")
    await page.click("button:has-text('Add note')")
    await page.wait_for_selector("text=Police informed, log 4411.")
    await page.select_option("#assignee-choice", label="Olivia Officer (olivia)")
    await page.click("button:has-text('Assign')")
    await page.wait_for_selector("#current-assignee:has-text('Olivia Officer')")
    await move("Actioned")
    await move("Closed")
    await no_serious_axe_issue(page, axe_script, "closed report")
    # An officer cannot reach admin pages.
    response = await page.goto(base + "/staff/admin/audit")
    assert response.status == 403
    await no_serious_axe_issue(page, axe_script, "forbidden")

    # The audit shows each step.
    await admin_page.goto(base + "/staff/admin/audit?target=URGE-6666")
    await no_serious_axe_issue(admin_page, axe_script, "audit")
    actions = await admin_page.locator("#audit tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.action)"
    )
    assert [a for a in reversed(actions) if a != "report.view"] == [
        "report.reveal_contact",
        "report.status",
        "report.status",
        "report.note",
        "report.assignee",
        "report.status",
        "report.status",
    ]

    # A browser without a session is refused everywhere.
    stranger = await new_page(bypass_csp=True)
    for path in (
        "/staff/reports",
        "/staff/reports/URGE-6666",
        "/staff/admin/audit",
        "/staff/admin/accounts",
        "/staff/reports.csv",
    ):
        await stranger.goto(base + path)
        assert stranger.url.startswith(base + "/staff/login"), path
        assert CONTACT_EMAIL not in await stranger.content()
    await no_serious_axe_issue(stranger, axe_script, "sign-in after refusal")
