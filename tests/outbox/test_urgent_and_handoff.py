"""Urgent reports: alert emails to the on-call addresses, the signed alert webhook, the
acknowledge link, escalation when nobody acknowledges; and the signed hand-off of every
report to a case system. A real app, a real SMTP server, a real webhook receiver."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import pytest

from bot.appkeys import STORAGE
from bot.config import Settings
from bot.outbox.config import DeliverySettings, parse_smtp_url
from bot.outbox.routes import ESCALATE
from bot.outbox.setup import DELIVERY
from bot.ports import OutboxMessage
from tests.cli.test_cli import SPEC_FIELDS
from tests.conftest import Api, RunningServer
from tests.fakes.smtp import SmtpServer
from tests.fakes.webhook_receiver import KEY, WebhookReceiver, start_receiver
from tests.outbox.support import Settled, serve_delivering, submit

ON_CALL = ("oncall@example.org", "deputy@example.org")
ESCALATION = ("head@example.org",)


@dataclass
class Setup:
    server: RunningServer
    receiver: WebhookReceiver
    settled: Settled


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    receiver, runner = await start_receiver()
    yield receiver
    await runner.cleanup()


@pytest.fixture
async def setup(
    server_settings: Settings,
    shared_catalogs: None,
    smtp: SmtpServer,
    receiver: WebhookReceiver,
    unused_tcp_port_factory: Callable[[], int],
) -> AsyncIterator[Setup]:
    port = unused_tcp_port_factory()
    public = f"http://127.0.0.1:{port}"
    delivery = DeliverySettings(
        public_url=public,
        email_from="feedback@intake.example.org",
        smtp=parse_smtp_url(smtp.url),
        urgent_alert_emails=ON_CALL,
        urgent_escalation_emails=ESCALATION,
        urgent_ack_minutes=30,
        alert_webhook_url=receiver.base_url + "/alerts",
        alert_webhook_secret=KEY,
        handoff_url=receiver.base_url + "/handoff",
        handoff_secret=KEY,
    )
    server = await serve_delivering(server_settings, delivery, port=port)
    dispatcher = server.app[DELIVERY].dispatcher
    assert dispatcher is not None
    yield Setup(server, receiver, Settled(dispatcher))
    await server.stop()


async def test_an_urgent_report_alerts_on_call_and_can_be_acknowledged_by_its_link(
    setup: Setup, smtp: SmtpServer, client: aiohttp.ClientSession
) -> None:
    receiver = setup.receiver
    receiver.fail_next = 1  # the first webhook (alert or hand-off) gets a 503
    api = Api(client, setup.server.base_url)
    reply = await submit(api, risk="yes", what_happened="SECRET-ACCOUNT")
    reference = reply["reference"]

    await smtp.recorder.wait_until(lambda: all(smtp.recorder.to(a) for a in ON_CALL))
    (alert,) = smtp.recorder.to(ON_CALL[0])
    body = alert.get_content()
    assert reference in str(alert["Subject"]) and "URGENT" in str(alert["Subject"])
    assert "Priority: urgent" in body and "Service: care home" in body
    assert f"{setup.server.base_url}/staff/reports/{reference}" in body
    assert "SECRET-ACCOUNT" not in body and "Sam Example" not in body

    # The signed webhook: verified with the shared secret; the retry repeats its id.
    await receiver.until(lambda: receiver.at("/alerts") and receiver.at("/handoff"))
    (hook,) = receiver.at("/alerts")
    assert hook.signed_by(KEY) and not hook.signed_by(b"another key of sixteen+ bytes")
    assert hook.json["reference"] == reference and hook.json["priority"] == "urgent"
    (refused,) = receiver.refused
    (retried,) = receiver.at(refused.path)
    assert refused.headers["webhook-id"] == retried.headers["webhook-id"]
    assert "SECRET-ACCOUNT" not in hook.body.decode()

    # The link: a GET shows a button and changes nothing; the POST records who and when.
    link = re.search(r"Acknowledge it \(you take charge\): (\S+)", body)
    assert link is not None
    async with client.get(link.group(1)) as page:
        assert page.status == 200 and "<form" in await page.text()
    async with setup.server.app[STORAGE].unit_of_work() as uow:
        assert await uow.reports.acknowledgement(reference) is None
    forged = link.group(1).replace("oncall%40", "mallory%40")
    async with client.get(forged) as page:
        assert page.status == 403
    form = dict(re.findall(r'name="(\w+)" value="([^"]*)"', await _text(client, link.group(1))))
    async with client.post(setup.server.base_url + "/alerts/ack", data=form) as done:
        assert done.status == 200 and "acknowledged" in await done.text()
    async with setup.server.app[STORAGE].unit_of_work() as uow:
        ack = await uow.reports.acknowledgement(reference)
    assert ack is not None and ack.by == ON_CALL[0]


async def test_escalation_only_when_nobody_acknowledged(
    setup: Setup, smtp: SmtpServer, client: aiohttp.ClientSession
) -> None:
    api = Api(client, setup.server.base_url)
    ignored = (await submit(api, risk="yes"))["reference"]
    taken = (await submit(api, risk="not_sure"))["reference"]
    routes = setup.server.app[DELIVERY].routes
    assert routes is not None
    await setup.settled.until(lambda: len(setup.settled.done("report.submitted")) == 2)
    storage = setup.server.app[STORAGE]
    async with storage.unit_of_work() as uow:
        await uow.reports.acknowledge(taken, by="cli:duty", at=datetime.now(UTC))
        timers = await uow.outbox.list(topic=ESCALATE)
        await uow.commit()
    # Each urgent report has its timer, due INTAKE_URGENT_ACK_MINUTES after submission.
    assert {t.payload["reference"] for t in timers} == {ignored, taken}
    assert all(t.available_at and t.available_at > datetime.now(UTC) for t in timers)
    for reference in (ignored, taken):  # the timers fire (as the dispatcher would, later)
        await routes.escalate(OutboxMessage(ESCALATE, reference, {"reference": reference}))
    await smtp.recorder.wait_until(lambda: bool(smtp.recorder.to(ESCALATION[0])))
    await setup.settled.until(lambda: len(setup.settled.done("email")) >= 5)
    (escalated,) = smtp.recorder.to(ESCALATION[0])
    assert str(escalated["Subject"]).startswith("ESCALATED") and ignored in str(
        escalated["Subject"]
    )


async def test_every_report_is_handed_off_signed_with_the_export_fields(
    setup: Setup, client: aiohttp.ClientSession
) -> None:
    receiver = setup.receiver
    receiver.fail_next = 1  # the case system is down once
    api = Api(client, setup.server.base_url)
    reference = (await submit(api, email="pat@example.org", risk="no"))["reference"]
    await receiver.until(lambda: bool(receiver.at("/handoff")))
    (handoff,) = receiver.at("/handoff")
    assert handoff.signed_by(KEY)
    assert handoff.headers["idempotency-key"] == reference
    assert handoff.headers["webhook-id"] == receiver.refused[0].headers["webhook-id"]
    record = handoff.json
    assert SPEC_FIELDS <= set(record) and record["reference"] == reference
    assert record["contact"]["email"] == "pat@example.org"
    assert not receiver.at("/alerts")  # a routine report raises no alert

    await setup.settled.until(lambda: bool(setup.settled.done("webhook.handoff")))
    async with setup.server.app[STORAGE].unit_of_work() as uow:
        (state,) = await uow.outbox.list(key_prefix=f"{reference}:handoff")
    assert state.status == "done" and state.attempts == 2


async def _text(client: aiohttp.ClientSession, url: str) -> str:
    async with client.get(url) as response:
        return await response.text()
