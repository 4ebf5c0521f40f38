"""The queue and the report page over HTTP: order, filters, search, pages; the report's
answers, location, clocks, status workflow, category, assignment, notes, contact reveal."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from bot.appkeys import STORAGE
from bot.ports import OutboxMessage
from storage.staff_reports import QueueFilters
from tests.staff.conftest import Staff

LOCATION = "1-900000001"  # Brookside Surgery, Gloucestershire (tests/fixtures)
CONTACT = {"name": "Pat Example", "email": "pat@example.org", "phone": "07700 900123"}


def order(html: str) -> list[str]:
    return re.findall(r'data-reference="([A-Z0-9-]+)"', html)


async def test_queue_urgent_at_the_top_filters_search_and_pages(staff: Staff) -> None:
    await staff.add_report("ROUT-2222", priority="routine", minutes_ago=500)
    await staff.add_report(
        "URGE-2222",
        priority="urgent",
        minutes_ago=5,
        data={"location_id": LOCATION, "what_happened": "Left alone on the floor all night"},
    )
    await staff.add_report("REVW-2222", priority="urgent_review", minutes_ago=50)
    for n in range(30):
        await staff.add_report(f"MANY-{n + 2:04d}", minutes_ago=400 - n)
    browser, _ = await staff.signed_in("olivia")
    page = await browser.get("/staff/reports")
    assert order(page.text)[:3] == ["URGE-2222", "REVW-2222", "ROUT-2222"]
    assert "33 reports" in page.text
    next_link = re.search(r'href="(/staff/reports\?[^"]*after=[^"]+)"', page.text)
    assert next_link
    second = await browser.get(next_link.group(1).replace("&amp;", "&"))
    assert len(order(second.text)) == 8 and not set(order(second.text)) & set(order(page.text))
    found = await browser.get("/staff/reports?q=floor+night")
    assert order(found.text) == ["URGE-2222"]
    by_reference = await browser.get("/staff/reports?q=urge2222")
    assert order(by_reference.text) == ["URGE-2222"]
    local = await browser.get("/staff/reports?local_authority=Gloucestershire")
    assert order(local.text) == ["URGE-2222"]


async def test_sqlite_queue_reads_the_priority_index(staff: Staff) -> None:
    """Pages stay fast at 100,000 reports because each reads the index in order."""
    async with staff.store.transaction() as tx:
        statement = tx.reports._filtered(QueueFilters()).where(text("reports.priority = 'urgent'"))
        compiled = statement.order_by(text("reports.created_at, reports.reference")).limit(25)
        sql = str(
            compiled.compile(
                tx.db.connection.sync_connection, compile_kwargs={"literal_binds": True}
            )
        )
        plan = (await tx.db.connection.execute(text("EXPLAIN QUERY PLAN " + sql))).fetchall()
    assert "ix_reports_priority_created_at" in " ".join(str(row) for row in plan)
    async with staff.store.transaction() as tx:
        location = tx.reports._location_id
        statement = tx.reports._filtered(QueueFilters()).where(location == "1-100")
        sql = str(
            statement.compile(
                tx.db.connection.sync_connection, compile_kwargs={"literal_binds": True}
            )
        )
        plan = (await tx.db.connection.execute(text("EXPLAIN QUERY PLAN " + sql))).fetchall()
    assert "ix_reports_location_id" in " ".join(str(row) for row in plan)


async def test_report_page_walk(staff: Staff) -> None:
    await staff.add_report(
        "URGE-3333",
        priority="urgent",
        data={
            "location_id": LOCATION,
            "what_happened": "My father was left without water",
            "share_with_service": "no",
            "referral": "yes",
            "referral_name": "Age UK <Bristol> & Bath",
            "contact": CONTACT,
        },
    )
    await staff.signed_in("lena", "lead")
    browser, _ = await staff.signed_in("olivia")
    page = await browser.get("/staff/reports/URGE-3333")
    assert page.status == 200
    assert "My father was left without water" in page.text
    # The regulator's own questions, among the answers; what was typed is escaped.
    assert re.search(r">Share with service</dt><dd[^>]*>no<", page.text)
    assert re.search(r">Referral name</dt><dd[^>]*>Age UK &lt;Bristol&gt; &amp; Bath<", page.text)
    found = await browser.get("/staff/reports?q=bristol+bath")
    assert "URGE-3333" in found.text
    assert "Brookside Surgery" in page.text and "Gloucestershire" in page.text
    assert "Same working day" in page.text
    for secret in CONTACT.values():
        assert secret not in page.text
    revealed = await browser.post("/staff/reports/URGE-3333/reveal", {"csrf_token": page.csrf})
    assert all(v in revealed.text for v in CONTACT.values())
    assert CONTACT["email"] not in (await browser.get("/staff/reports/URGE-3333")).text

    async def act(what: str, **form: str) -> str:
        current = await browser.get("/staff/reports/URGE-3333")
        done = await browser.post(
            f"/staff/reports/URGE-3333/{what}", {"csrf_token": current.csrf, **form}
        )
        assert done.status == 200, done.text
        return done.text

    assert "Referred to police" not in (await browser.get("/staff/reports/URGE-3333")).text
    await act("status", value="triaged")
    bad = await browser.post(
        "/staff/reports/URGE-3333/status",
        {"csrf_token": (await browser.get("/staff/reports/URGE-3333")).csrf, "value": "new"},
    )
    assert bad.status == 400
    await act("category", value="safeguarding_alert")
    await act("status", value="referred_police")
    await act("note", note="Rang the police non-emergency line; log 123.")
    async with staff.store.transaction() as tx:
        lena = await tx.account_by_username("lena")
    assert lena is not None
    await act("assignee", value=str(lena.id))
    final = await act("status", value="actioned")
    final = await act("status", value="closed")
    assert 'id="current-status">Closed' in final
    assert "Rang the police non-emergency line" in final
    assert 'id="current-assignee">Lena' in final
    assert re.search(r"Status: Referred to police", final)
    actions = await staff.audit_actions("URGE-3333")
    assert [a for a in actions if a != "report.view"] == [
        "report.reveal_contact",
        "report.status",
        "report.category",
        "report.status",
        "report.note",
        "report.assignee",
        "report.status",
        "report.status",
    ]
    assert actions[0] == "report.view"


async def test_contact_details_are_hidden_in_the_transcript_too(staff: Staff) -> None:
    from datetime import UTC, datetime

    from storage.models import conversations, transcript_entries

    await staff.add_report("TRAN-2222", data={"contact": CONTACT, "what_happened": "cold food"})
    now = datetime.now(UTC)
    async with staff.store.transaction() as tx:
        await tx.db.execute(
            conversations.insert().values(
                id="conv-TRAN-2222",
                channel="web",
                state={},
                status="done",
                revision=1,
                created_at=now,
                updated_at=now,
            )
        )
        lines = [
            ("bot", "What is your email address?"),
            ("user", CONTACT["email"]),
            ("bot", f"We will write to {CONTACT['name']} at {CONTACT['email']}."),
        ]
        for seq, (role, said) in enumerate(lines, start=1):
            await tx.db.execute(
                transcript_entries.insert().values(
                    conversation_id="conv-TRAN-2222",
                    seq=seq,
                    role=role,
                    payload={"text": said},
                    created_at=now,
                )
            )
    browser, _ = await staff.signed_in("olivia")
    page = await browser.get("/staff/reports/TRAN-2222")
    assert "What is your email address?" in page.text
    assert CONTACT["email"] not in page.text and CONTACT["name"] not in page.text
    assert "[contact details hidden]" in page.text
    revealed = await browser.post("/staff/reports/TRAN-2222/reveal", {"csrf_token": page.csrf})
    assert f"We will write to {CONTACT['name']} at {CONTACT['email']}." in revealed.text


async def test_an_urgent_report_is_acknowledged_here_and_its_messages_are_shown(
    staff: Staff,
) -> None:
    """The same acknowledgement the alert's link and `intake reports ack` record (it stops the
    escalation), with its audit row; the report's outgoing messages with their state, never
    their text or address."""
    await staff.add_report("URGE-4444", priority="urgent", data={"contact": CONTACT})
    await staff.add_report("ROUT-4444", priority="routine")
    storage = staff.server.app[STORAGE]
    async with storage.unit_of_work() as uow:
        await uow.outbox.add(
            [
                OutboxMessage(
                    "email",
                    "URGE-4444",
                    {"kind": "acknowledgement", "reference": "URGE-4444", "to": CONTACT["email"]},
                    idempotency_key="URGE-4444:acknowledgement",
                    # Not due yet, so the server's own dispatcher leaves it waiting.
                    available_at=datetime.now(UTC) + timedelta(hours=1),
                )
            ]
        )
        await uow.commit()
    browser, _ = await staff.signed_in("olivia")

    page = await browser.get("/staff/reports/URGE-4444")
    assert "Not acknowledged" in page.text
    assert "acknowledgement" in page.text and "waiting" in page.text
    assert CONTACT["email"] not in page.text
    assert "Urgent alert" not in (await browser.get("/staff/reports/ROUT-4444")).text

    refused = await browser.post("/staff/reports/URGE-4444/acknowledge", {"csrf_token": "forged"})
    assert refused.status == 403
    done = await browser.post("/staff/reports/URGE-4444/acknowledge", {"csrf_token": page.csrf})
    assert done.status == 200
    assert "Acknowledged by staff:olivia" in done.text and "Not acknowledged" not in done.text
    async with storage.unit_of_work() as uow:
        ack = await uow.reports.acknowledgement("URGE-4444")
    assert ack is not None and ack.by == "staff:olivia"
    assert "report.acknowledge" in await staff.audit_actions("URGE-4444")
