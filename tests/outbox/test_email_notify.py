"""GOV.UK Notify through the official client, against a small fake of its API on loopback:
templates by id, our own words as personalisation, a `reference` with no personal data, an
SMS when only a UK mobile number was given, a 500 retried."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bot.config import Settings
from bot.outbox.config import DeliverySettings
from bot.outbox.setup import DELIVERY
from tests.conftest import Api, RunningServer
from tests.fakes.notify_api import API_KEY, EMAIL_TEMPLATE, SMS_TEMPLATE, FakeNotify
from tests.outbox.support import Settled, confirmation, serve_delivering, submit


@pytest.fixture
async def notify() -> AsyncIterator[tuple[FakeNotify, str]]:
    fake = FakeNotify()
    runner = web.AppRunner(fake.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield fake, f"http://{host}:{port}"
    await runner.cleanup()


@pytest.fixture
async def running(
    server_settings: Settings, shared_catalogs: None, notify: tuple[FakeNotify, str]
) -> AsyncIterator[RunningServer]:
    delivery = DeliverySettings(
        notify_api_key=API_KEY,
        notify_base_url=notify[1],
        notify_template_email=EMAIL_TEMPLATE,
        notify_template_sms=SMS_TEMPLATE,
    )
    server = await serve_delivering(server_settings, delivery)
    yield server
    await server.stop()


async def test_acknowledgements_go_through_notify_by_email_or_sms(
    running: RunningServer, notify: tuple[FakeNotify, str], client: aiohttp.ClientSession
) -> None:
    fake, _url = notify
    dispatcher = running.app[DELIVERY].dispatcher
    assert dispatcher is not None
    settled = Settled(dispatcher)
    fake.fail_next = 1  # the first request gets a 500 and is retried
    api = Api(client, running.base_url)
    by_email = await submit(api, locale="es", email="ana@example.org", what_happened="PRIVATE")
    by_sms = await submit(api, locale="pl", phone="07400 123456")
    landline = await submit(api, phone="020 7946 0958")  # no SMS to a landline
    assert "correo electrónico" in confirmation(by_email)
    assert "SMS" in confirmation(by_sms)
    assert "text message" not in confirmation(landline) and "email" not in confirmation(landline)

    await settled.until(lambda: len(settled.done("email")) + len(settled.done("sms")) == 2)
    (email,) = fake.emails
    assert email["template_id"] == EMAIL_TEMPLATE
    assert email["email_address"] == "ana@example.org"
    assert email["reference"] == f"{by_email['reference']}:acknowledgement"
    assert by_email["reference"] in email["personalisation"]["subject"]
    assert email["personalisation"]["subject"].startswith("Su informe")
    assert "PRIVATE" not in email["personalisation"]["body"]
    (sms,) = fake.sms
    assert sms["template_id"] == SMS_TEMPLATE and sms["phone_number"] == "+447400123456"
    assert sms["reference"] == f"{by_sms['reference']}:acknowledgement_sms"
    assert by_sms["reference"] in sms["personalisation"]["body"]
    assert "999" in sms["personalisation"]["body"]
    assert fake.unauthorised == 0
    assert any(o.status == "retry" and o.reason == "notify_500" for _m, o in settled.outcomes)
