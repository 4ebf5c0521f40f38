"""/metrics in the Prometheus text format, read back with prometheus-client's own parser;
counters added up across worker processes (multiprocess mode)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bot.config import Settings
from bot.outbox.config import DeliverySettings
from bot.outbox.setup import DeliveryOptions
from tests.conftest import Api
from tests.outbox.support import serve_delivering, submit

ROOT = Path(__file__).resolve().parents[2]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_show_turns_backlog_and_unacknowledged_urgent_reports(
    server_settings: Settings, shared_catalogs: None, client: aiohttp.ClientSession
) -> None:
    # No dispatcher in this worker: the report's event stays in the outbox, to be counted.
    server = await serve_delivering(
        server_settings, DeliverySettings(), DeliveryOptions(run_dispatcher=False)
    )
    try:
        await submit(Api(client, server.base_url), risk="yes")
        async with client.get(server.base_url + "/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
    finally:
        await server.stop()
    found = samples(text)
    assert found[("intake_turns_total", (("channel", "web"),))] >= 10
    assert found[("intake_turn_seconds_count", (("channel", "web"),))] >= 10
    assert found[("intake_outbox_pending", (("topic", "report.submitted"),))] == 1
    assert (
        found[("intake_outbox_oldest_pending_age_seconds", (("topic", "report.submitted"),))] >= 0
    )
    assert found[("intake_outbox_dead_letters", (("topic", "report.submitted"),))] == 0
    assert found[("intake_urgent_reports_unacknowledged", ())] == 1
    # The conversation's turns were lone writes, committed in batches by the storage.
    sqlite = (("backend", "sqlite"),)
    assert found[("intake_storage_write_batches_total", (*sqlite, ("outcome", "committed")))] >= 1
    assert found[("intake_storage_write_batch_writes_count", sqlite)] >= 1
    assert found[("intake_storage_write_batch_writes_sum", sqlite)] >= 10


async def test_metrics_are_refused_outside_the_allowed_networks(
    server_settings: Settings, shared_catalogs: None, client: aiohttp.ClientSession
) -> None:
    server = await serve_delivering(
        server_settings, DeliverySettings(metrics_allowed=("10.0.0.0/8",))
    )
    try:
        headers = {"X-Forwarded-For": "10.1.2.3"}  # not believed
        async with client.get(server.base_url + "/metrics", headers=headers) as response:
            assert response.status == 403
    finally:
        await server.stop()


def test_counters_of_several_worker_processes_are_added_up(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    worker = textwrap.dedent(
        """
        from bot import metrics
        for _ in range(3):
            metrics.record_delivery("email", "done", None)
        metrics.record_delivery("email", "retry", None)
        """
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", worker], cwd=ROOT, env=env, check=True)
    scrape = (
        "import sys; from bot import metrics; sys.stdout.write(metrics.exposition([], 0).decode())"
    )
    result = subprocess.run(
        [sys.executable, "-c", scrape],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    found = samples(result.stdout)
    done = ("intake_outbox_deliveries_total", (("outcome", "done"), ("topic", "email")))
    retried = ("intake_outbox_deliveries_total", (("outcome", "retry"), ("topic", "email")))
    assert found[done] == 6 and found[retried] == 2
