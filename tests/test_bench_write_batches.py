"""The bench reads how many writes went together per commit, and how many commits were slow,
from the app's own /metrics (`bench.write_batches`), so that a latency row shows whether its
turns shared commits and whether its tail waited for the database."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from aiohttp import web

from bench import write_batches
from bot import metrics
from tests.fakes.loopback import serving


def test_the_batches_are_read_from_the_apps_exposition() -> None:
    before = write_batches.parse(metrics.exposition([], 0).decode())
    metrics.record_write_batch("postgresql", "committed", 5, 0.004)
    metrics.record_write_batch("postgresql", "committed", 1, 0.07)  # slow
    metrics.record_write_batch("sqlite", "split", 3, 0.16)  # slower
    metrics.record_write_batch("sqlite", "failed", 2, 0.05)  # at the bound: not over it
    after = write_batches.parse(metrics.exposition([], 0).decode())

    run = after - before
    assert (run.batches, run.writes) == (4, 11)
    assert (run.slow, run.slower) == (2, 1)
    assert run.writes_per_batch == 2.75
    assert write_batches.note({"write_batches": run}) == (
        "2.8 writes a commit (11 in 4 batches, warm-up included)"
    )
    # The slow ones are counted over the window alone, as the load generator read them.
    window = dataclasses.asdict(run)
    assert write_batches.note({"write_batches": run, "window_batches": window}) == (
        "2.8 writes a commit (11 in 4 batches, warm-up included); in the window 2 of 4 "
        "batches took over 50 ms to commit, 1 over 100"
    )


def test_no_batches_say_so_rather_than_divide_by_zero() -> None:
    assert write_batches.Batches().writes_per_batch == 0.0
    assert write_batches.note({}) == "no write batches read"
    assert write_batches.note({"write_batches": write_batches.Batches()}) == (
        "no write batches read"
    )


async def test_read_asks_the_app_and_a_server_without_metrics_gives_none(
    unused_tcp_port_factory: Callable[[], int],
) -> None:
    async def exposition(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition([], 0), content_type="text/plain")

    app, ceiling = web.Application(), web.Application()
    app.router.add_get("/metrics", exposition)
    closed_port = unused_tcp_port_factory()
    async with serving(app) as app_port, serving(ceiling) as ceiling_port:
        seen = await asyncio.to_thread(write_batches.read, app_port)
        assert seen == write_batches.parse(metrics.exposition([], 0).decode())
        assert await asyncio.to_thread(write_batches.read, ceiling_port) is None  # 404
        assert await asyncio.to_thread(write_batches.read, closed_port, 1.0) is None
