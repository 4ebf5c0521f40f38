"""Acknowledgement emails through a real SMTP server (aiosmtpd) on loopback, from a real app:
the person's language, the reference, nothing of what they said; nothing lost or doubled
when the server refuses or goes away for a while; and no promise when email is off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.appkeys import STORAGE
from bot.config import Settings
from bot.outbox.config import DeliverySettings, parse_smtp_url
from bot.outbox.email import Email
from bot.outbox.failures import RetryLater
from bot.outbox.setup import DELIVERY
from tests.conftest import Api, RunningServer
from tests.fakes.smtp import SmtpServer
from tests.outbox.support import Settled, confirmation, serve_delivering, submit

FROM = "feedback@intake.example.org"


@pytest.fixture
async def running(
    server_settings: Settings, shared_catalogs: None, smtp: SmtpServer
) -> AsyncIterator[RunningServer]:
    delivery = DeliverySettings(
        email_from=FROM, smtp=parse_smtp_url(smtp.url), public_url="https://intake.example.org"
    )
    server = await serve_delivering(server_settings, delivery)
    yield server
    await server.stop()


@pytest.fixture
def api(client: aiohttp.ClientSession, running: RunningServer) -> Api:
    return Api(client, running.base_url)


EXPECTED_SUBJECT_START = {
    "en": "Your report to us",
    "cy": "Eich adroddiad i ni",
    "pl": "Państwa zgłoszenie",
    "ar": "بلاغك إلينا",
    "pa": "ਸਾਨੂੰ ਤੁਹਾਡੀ ਰਿਪੋਰਟ",
}


async def test_each_report_with_an_email_is_acknowledged_once_in_its_language(
    api: Api, smtp: SmtpServer
) -> None:
    replies = {}
    for index, locale in enumerate(EXPECTED_SUBJECT_START):
        replies[locale] = await submit(
            api, locale=locale, email=f"person{index}@example.org", what_happened="SECRET-ACCOUNT"
        )
        assert replies[locale]["reference"]
    without = await submit(api, locale="en")  # no contact: no email
    assert "email" not in confirmation(without).lower()

    received = await smtp.recorder.wait_for(len(EXPECTED_SUBJECT_START))
    for index, (locale, start) in enumerate(EXPECTED_SUBJECT_START.items()):
        reference = replies[locale]["reference"]
        (mail,) = smtp.recorder.to(f"person{index}@example.org")
        assert str(mail["Subject"]).startswith(start) and reference in str(mail["Subject"])
        assert mail["From"] == FROM and mail["Content-Language"] == locale
        assert mail["Message-ID"] == f"<{reference}.acknowledgement@intake.example.org>"
        body = mail.get_content()
        assert reference in body and "999" in body
        assert "SECRET-ACCOUNT" not in body and "Sam Example" not in body
    assert len(received) == len(EXPECTED_SUBJECT_START)
    # The confirmation promised the email, in the person's language.
    assert "We will email you" in confirmation(replies["en"])
    assert "Byddwn yn anfon e-bost atoch" in confirmation(replies["cy"])


async def test_a_refusing_then_absent_server_loses_nothing_and_doubles_nothing(
    api: Api, smtp: SmtpServer, running: RunningServer
) -> None:
    routes = running.app[DELIVERY].routes
    assert routes is not None and routes.email is not None
    real = routes.email
    refused = asyncio.Event()

    class Watched:
        backend = real.backend

        async def send(self, email: Email) -> None:
            try:
                await real.send(email)
            except RetryLater:
                refused.set()
                raise

    routes.email = Watched()
    dispatcher = running.app[DELIVERY].dispatcher
    assert dispatcher is not None
    settled = Settled(dispatcher)
    smtp.recorder.fail_next = 3  # "451 try later", three times
    first = await submit(api, email="first@example.org")
    await settled.until(lambda: len(settled.done("email")) == 1)  # the client has quit
    assert smtp.recorder.attempts == 4

    smtp.stop()  # connection refused for a while
    refused.clear()
    second = await submit(api, email="second@example.org")
    async with asyncio.timeout(30):
        await refused.wait()
    smtp.start()
    await settled.until(lambda: len(settled.done("email")) == 2)
    references = [str(m["Subject"]).rsplit(" ", 1)[-1] for m in smtp.recorder.received]
    assert references == [first["reference"], second["reference"]]

    async with running.app[STORAGE].unit_of_work() as uow:
        delivered = await uow.outbox.list(topic="email", status="done")
        pending = await uow.outbox.list(topic="email", status="pending")
    assert len(delivered) == 2 and not pending
    # Delivered messages keep only what an audit needs: no address, no text.
    assert all(set(m.payload) == {"kind", "reference"} for m in delivered)


async def test_email_off_promises_nothing(
    server_settings: Settings, shared_catalogs: None, client: aiohttp.ClientSession
) -> None:
    server = await serve_delivering(server_settings, DeliverySettings())
    try:
        reply = await submit(Api(client, server.base_url), email="pat@example.org")
    finally:
        await server.stop()
    text = confirmation(reply)
    assert reply["reference"] in text
    assert "email" not in text.lower() and "we will still use what you told us" in text
