"""The audit log (admins only, exportable) and the inbox exports (leads and admins, audited)."""

from __future__ import annotations

import csv
import io
import json

from tests.staff.conftest import Staff


async def test_admin_sees_and_exports_the_audit_log_officer_cannot(staff: Staff) -> None:
    await staff.add_report("URGE-4444", priority="urgent")
    officer, _ = await staff.signed_in("olivia")
    await officer.get("/staff/reports/URGE-4444")
    assert (await officer.get("/staff/admin/audit")).status == 403
    assert (await officer.get("/staff/admin/audit.csv")).status == 403
    admin, _ = await staff.signed_in("ada", "admin")
    page = await admin.get("/staff/admin/audit")
    assert page.status == 200
    assert 'data-action="report.view"' in page.text and "olivia" in page.text
    filtered = await admin.get("/staff/admin/audit?target=URGE-4444")
    assert 'data-action="sign_in"' not in filtered.text
    exported = await admin.get("/staff/admin/audit.csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {"sign_in", "report.view", "audit.view"} <= {r["action"] for r in rows}
    lines = (await admin.get("/staff/admin/audit.jsonl")).text.splitlines()
    assert json.loads(lines[-1])["action"] == "audit.export"  # the CSV export, recorded
    assert "audit.export" in await staff.audit_actions()


async def test_inbox_export_follows_the_filters_and_is_audited(staff: Staff) -> None:
    await staff.add_report(
        "URGE-5555",
        priority="urgent",
        data={"service_type": "care_home", "contact": {"email": "pat@example.org"}},
    )
    await staff.add_report("ROUT-5555", data={"service_type": "=HYPERLINK(1)"})
    officer, _ = await staff.signed_in("olivia")
    assert (await officer.get("/staff/reports.csv")).status == 403
    lead, _ = await staff.signed_in("lena", "lead")
    exported = await lead.get("/staff/reports.csv?priority=urgent")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["reference"] for r in rows] == ["URGE-5555"]
    assert "pat@example.org" not in exported.text  # no contact details in exports
    everything = await lead.get("/staff/reports.csv")
    assert "'=HYPERLINK(1)" in everything.text  # a formula is defused
    lines = (await lead.get("/staff/reports.jsonl?priority=routine")).text.splitlines()
    assert [json.loads(line)["reference"] for line in lines] == ["ROUT-5555"]
    async with staff.store.transaction() as tx:
        exports = await tx.audit_entries(action="reports.export")
    assert [e.detail["rows"] for e in reversed(exports)] == [1, 2, 1]
    assert exports[-1].detail["priority"] == "urgent"
