"""Inspection-report alerts end to end: asked for in the chat about a service found in the
directory, confirmed by the emailed link (double opt-in), sent once when a monthly import
(`intake directory import`) shows a newer "Date of latest check", stopped with one click."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from bot.appkeys import STORAGE
from bot.config import Settings
from bot.outbox.config import DeliverySettings, parse_smtp_url
from tests.conftest import Api, RunningServer
from tests.fakes.smtp import SmtpServer
from tests.fixtures import SMALL_DIRECTORY
from tests.outbox.support import serve_delivering, submit

ROOT = Path(__file__).resolve().parents[2]
CASTLE_VIEW = "1-900000003"


@pytest.fixture
async def running(
    server_settings: Settings,
    shared_catalogs: None,
    smtp: SmtpServer,
    unused_tcp_port_factory: Callable[[], int],
) -> AsyncIterator[RunningServer]:
    port = unused_tcp_port_factory()
    delivery = DeliverySettings(
        public_url=f"http://127.0.0.1:{port}",
        email_from="feedback@intake.example.org",
        smtp=parse_smtp_url(smtp.url),
    )
    server = await serve_delivering(server_settings, delivery, port=port)
    yield server
    await server.stop()


def import_directory(database_url: str, csv: Path) -> str:
    env = {**os.environ, "INTAKE_DATABASE_URL": database_url, "INTAKE_LOG_LEVEL": "WARNING"}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "directory", "import", str(csv)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def link_in(text: str) -> str:
    found = re.search(r"(http://127\.0\.0\.1:\d+/alerts/subscription/\w+\?token=\S+)", text)
    assert found is not None, text
    return found.group(1)


async def test_confirmed_subscribers_get_one_alert_for_a_newer_inspection(
    running: RunningServer, smtp: SmtpServer, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    api = Api(client, running.base_url)
    common = {"provider": "castle veiw care home lancaster", "location_id": CASTLE_VIEW}
    await submit(api, locale="cy", email="keen@example.org", alerts="yes", **common)
    await submit(api, email="unsure@example.org", alerts="yes", **common)
    await submit(api, email="quiet@example.org", alerts="no", **common)
    await smtp.recorder.wait_until(
        lambda: (
            len(smtp.recorder.to("keen@example.org")) == 2  # acknowledgement + confirm
            and len(smtp.recorder.to("unsure@example.org")) == 2
            and len(smtp.recorder.to("quiet@example.org")) == 1  # the acknowledgement only
        )
    )
    (confirm,) = [
        m for m in smtp.recorder.to("keen@example.org") if "rhybuddion" in str(m["Subject"])
    ]
    url = link_in(confirm.get_content())
    async with client.get(url) as page:  # a GET (a mail scanner) changes nothing
        assert page.status == 200 and 'lang="cy"' in await page.text()
    async with client.post(url) as page:
        assert page.status == 200 and "Castle View Care Home" in await page.text()
    async with client.post(url) as again:
        assert again.status == 200  # confirming twice is harmless

    database = running.settings.database_url
    assert "alerts queued" not in import_directory(database, SMALL_DIRECTORY)  # same dates
    newer = tmp_path / "directory-newer.csv"
    newer.write_text(
        SMALL_DIRECTORY.read_text(encoding="utf-8").replace(
            "11/Nov/2024 - 00:00", "02/Feb/2026 - 00:00"
        ),
        encoding="utf-8",
    )
    assert "1 inspection-report alerts queued" in import_directory(database, newer)
    assert "alerts queued" not in import_directory(database, newer)  # told once

    await smtp.recorder.wait_until(lambda: len(smtp.recorder.to("keen@example.org")) == 3)
    alert = smtp.recorder.to("keen@example.org")[-1]
    assert "Castle View Care Home" in str(alert["Subject"])
    assert "https://www.cqc.org.uk/location/1-900000003" in alert.get_content()
    stop = alert["List-Unsubscribe"].strip("<>")
    assert alert["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert len(smtp.recorder.to("unsure@example.org")) == 2  # never confirmed: no alert

    # One click (RFC 8058): the mail client POSTs; the address is deleted.
    async with client.post(stop, data="List-Unsubscribe=One-Click") as stopped:
        assert stopped.status == 200
    async with running.app[STORAGE].unit_of_work() as uow:
        assert await uow.subscriptions.get(stop.rsplit("=", 1)[-1]) is None
    async with client.get(stop) as gone:
        assert gone.status == 404
