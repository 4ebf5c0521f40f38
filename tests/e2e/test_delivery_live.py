"""Outgoing messages on live servers, as the issue will check them: two `python -m bot
serve` workers on one PostgreSQL outbox, a real SMTP server (STARTTLS, AUTH) that refuses for
a while and then goes away and comes back, a case system receiving signed hand-offs. Every
report with an email gets exactly one acknowledgement in its language, every urgent report
an on-call alert within the spec's 60 s, every report exactly one hand-off."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Api
from tests.e2e.multiworker_support import (
    SMALL_DIRECTORY,
    free_port,
    fresh_database,
    run_cli,
    start_serve,
    wait_ready,
    worker_env,
)
from tests.fakes.smtp import SmtpServer, make_certificate
from tests.fakes.webhook_receiver import KEY, SECRET, start_receiver
from tests.outbox.support import submit

pytestmark = pytest.mark.postgres

ON_CALL = "oncall@example.org"
LOCALES = ("en", "cy", "pl", "ur", "it", "bn")


async def test_two_workers_one_outbox_smtp_refusing_then_down_then_back(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the STARTTLS test server")
    certificate = make_certificate(tmp_path)
    smtp = SmtpServer(free_port(), certificate)
    smtp.start()
    receiver, receiver_runner = await start_receiver()
    ports = [free_port(), free_port()]
    delivery_env = {
        "INTAKE_PUBLIC_URL": f"http://127.0.0.1:{ports[0]}",
        "INTAKE_EMAIL_FROM": "feedback@intake.example.org",
        "INTAKE_SMTP_URL": smtp.url,
        "INTAKE_URGENT_ALERT_EMAILS": ON_CALL,
        "INTAKE_HANDOFF_URL": receiver.base_url + "/handoff",
        "INTAKE_HANDOFF_SECRET": SECRET,
        "SSL_CERT_FILE": str(certificate[0]),
    }
    workers = []
    async with fresh_database("intake_delivery") as database_url:
        env = worker_env(database_url, 0)
        await asyncio.to_thread(run_cli, ["db", "upgrade"], env)
        await asyncio.to_thread(run_cli, ["directory", "import", str(SMALL_DIRECTORY)], env)
        try:
            workers = [
                start_serve(f"worker-{i}", database_url, port, tmp_path, **delivery_env)
                for i, port in enumerate(ports)
            ]
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                await asyncio.gather(*(wait_ready(w, session) for w in workers))
                apis = [Api(session, w.base_url) for w in workers]
                smtp.recorder.fail_next = 4  # "451 try again later", four times
                submitted: dict[str, str] = {}  # address -> reference
                for index, locale in enumerate(LOCALES):
                    address = f"person{index}@example.org"
                    reply = await submit(apis[index % 2], locale=locale, email=address)
                    submitted[address] = reply["reference"]
                urgent = await submit(apis[0], risk="yes")  # no contact: an alert only
                loop = asyncio.get_running_loop()
                urgent_at = loop.time()
                await smtp.recorder.wait_until(lambda: bool(smtp.recorder.to(ON_CALL)), 60)
                alert_delay = loop.time() - urgent_at
                await smtp.recorder.wait_until(lambda: smtp.recorder.attempts >= 4, 60)

                smtp.stop()  # the mail server goes away for a while
                for index in range(len(LOCALES), len(LOCALES) + 2):
                    address = f"person{index}@example.org"
                    reply = await submit(apis[index % 2], email=address)
                    submitted[address] = reply["reference"]
                smtp.start()

                await smtp.recorder.wait_until(
                    lambda: all(smtp.recorder.to(a) for a in submitted), 120
                )
                await receiver.until(lambda: len(receiver.received) >= len(submitted) + 1, 60)
        finally:
            for worker in workers:
                worker.reap()
            smtp.stop()
            await receiver_runner.cleanup()

    assert alert_delay < 60, f"the urgent alert took {alert_delay:.1f} s"
    (alert,) = smtp.recorder.to(ON_CALL)
    assert urgent["reference"] in str(alert["Subject"])
    counts = Counter(str(m["To"]) for m in smtp.recorder.received)
    assert all(counts[address] == 1 for address in submitted), counts  # nothing doubled
    for index, locale in enumerate(LOCALES):
        (mail,) = smtp.recorder.to(f"person{index}@example.org")
        assert mail["Content-Language"] == locale
        assert submitted[f"person{index}@example.org"] in str(mail["Subject"])
    handed = Counter(d.headers["webhook-id"] for d in receiver.received)
    assert len(handed) == len(submitted) + 1 and set(handed.values()) == {1}
    assert all(d.signed_by(KEY) for d in receiver.received)
    assert {d.json["reference"] for d in receiver.received} == {
        *submitted.values(),
        urgent["reference"],
    }
