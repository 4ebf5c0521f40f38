"""Where a web turn's CPU goes, layer by layer (information for issue 16, no targets).

    .venv/bin/python -m bench --only layers

The web rows compare the product with the raw ceiling in turns per second; when the product
is the slower, these rows say which layer the difference is in. All on PostgreSQL (SQLite
when it is absent), each server in its own process, 50 conversations at once:

- server CPU per request of the raw ceiling (`bench.ceiling_server --driver raw`: bare
  aiohttp, an asyncpg pool, BEGIN, one insert, COMMIT);
- server CPU per request of the product's web channel alone (`bench.http_layer_server`: the
  intake service answers turns at once, so aiohttp, the middlewares, the body, the reply's
  JSON, the headers and the access log remain, and the one request in twenty that creates a
  conversation is real);
- the same with one unit of work entered and left on every answered turn, nothing run in it
  (`--unit-of-work`): its cost in a saturated server, 50 requests in flight;
- server CPU per turn of the whole product, as the web rows run it;
- in one process without HTTP: CPU per turn of `IntakeService.handle` (the script's
  conversations, 50 at a time: engine, rendering, storage, one statement a turn), a unit of
  work entered and left with nothing run in it, and SQLAlchemy's pool checkout and check-in
  through its greenlet hand-off (what a unit of work's connection costs), and that hand-off
  alone.

CPU time is measured rather than the rate because it moves much less with other load on
the machine. The loadgen's own process is not counted.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import PYTHON, Row, fmt, free_port, log, ratio, spawn
from bench.servers import app_env, app_server, ceiling_server, database, load, postgres_available
from bench.web_turns import cpu_ms

CONCURRENCY = 50
IN_PROCESS_CONVERSATIONS = 200
TIMED_CALLS = 5000


@contextlib.contextmanager
def http_layer_server(url: str, *, unit_of_work: bool = False) -> Iterator[tuple[int, Any]]:
    port = free_port()
    log_path = Path("/tmp") / f"intake-bench-http-layer-{port}.log"
    args = [PYTHON, "-m", "bench.http_layer_server", "--workers", "1"]
    if unit_of_work:
        args.append("--unit-of-work")
    with spawn(args, app_env(url, port), port=port, log_path=log_path) as proc:
        yield port, proc


def server_rows(kind: str, label: str, quick: bool) -> list[Row]:
    timing = {"duration": 2.0, "warmup": 0.5} if quick else {"duration": 5.0, "warmup": 1.0}
    measured: dict[str, float] = {}
    with database(kind) as url:
        with ceiling_server(url) as (port, proc):
            log(f"layers {label}: the raw ceiling")
            result = load("ceiling", port, concurrency=CONCURRENCY, server_pid=proc.pid, **timing)
            measured["ceiling"] = cpu_ms(result)
    for name, with_uow in (("http", False), ("http_uow", True)):
        with database(kind) as url, http_layer_server(url, unit_of_work=with_uow) as (port, proc):
            log(f"layers {label}: the web channel alone{' with a unit of work' * with_uow}")
            # Its first turns are real (conversations made, one submitted): a warm-up first.
            load("web", port, concurrency=CONCURRENCY, server_pid=proc.pid, **timing)
            result = load("web", port, concurrency=CONCURRENCY, server_pid=proc.pid, **timing)
            measured[name] = cpu_ms(result)
    with database(kind) as url, app_server(url) as (port, proc):
        log(f"layers {label}: the whole product")
        result = load("web", port, concurrency=CONCURRENCY, server_pid=proc.pid, **timing)
        measured["product"] = cpu_ms(result)
    ceiling = measured["ceiling"]
    return [
        Row(
            f"server CPU per request, raw ceiling, {label}",
            fmt(ceiling, " ms"),
            note="bare aiohttp, asyncpg's pool, BEGIN, one insert, COMMIT (aiosqlite on SQLite)",
        ),
        Row(
            f"server CPU per request, our web channel alone, {label}",
            fmt(measured["http"], " ms"),
            fmt(ceiling, " ms"),
            ratio(measured["http"], ceiling),
            note=(
                "turns answered at once by the service (bench.http_layer_server); the rest as "
                "deployed, new conversations too (1 request in 20)"
            ),
        ),
        Row(
            f"server CPU per request, web channel + an empty unit of work, {label}",
            fmt(measured["http_uow"], " ms"),
            fmt(measured["http"], " ms"),
            ratio(measured["http_uow"], measured["http"]),
            note=(
                "baseline: the web channel alone; the difference is a unit of work's cost "
                "in a saturated server (compare the in-process row below)"
            ),
        ),
        Row(
            f"server CPU per turn, whole product, {label}",
            fmt(measured["product"], " ms"),
            fmt(ceiling, " ms"),
            ratio(measured["product"], ceiling),
        ),
    ]


async def _cpu_per_call(call: Callable[[], Awaitable[Any]], count: int) -> float:
    """CPU µs per awaited call, after a warm-up of a tenth as many."""
    for _ in range(max(1, count // 10)):
        await call()
    started = time.process_time()
    for _ in range(count):
        await call()
    return 1e6 * (time.process_time() - started) / count


async def in_process(url: str, conversations: int, calls: int) -> dict[str, float]:
    from sqlalchemy.util.concurrency import greenlet_spawn

    from bench.script import SCRIPT, web_conversations
    from bot.app import build_service
    from bot.cli import settle_garbage_collector
    from bot.config import Settings
    from storage.sqlalchemy_storage import SqlStorage

    service = await build_service(Settings.from_env({"INTAKE_DATABASE_URL": url}))
    storage = service.storage
    assert isinstance(storage, SqlStorage)
    await settle_garbage_collector(None)
    numbers = iter(range(1_000_000))

    async def many(count: int) -> None:
        await web_conversations(service, count, at_once=CONCURRENCY, numbers=numbers)

    async def unit_of_work() -> None:
        async with storage.unit_of_work():
            pass

    sync_engine = storage.engine.sync_engine

    def checkout_and_checkin() -> None:
        sync_engine.raw_connection()._close_special(transaction_reset=True)

    async def pool_through_greenlet() -> None:
        await greenlet_spawn(checkout_and_checkin)

    async def greenlet_alone() -> None:
        await greenlet_spawn(_nothing)

    try:
        await many(CONCURRENCY)  # warm-up: every pooled connection opened and prepared
        started = time.process_time()
        await many(conversations)
        turns = conversations * (len(SCRIPT) + 1)
        measured = {"turn": 1e6 * (time.process_time() - started) / turns}
        measured["unit_of_work"] = await _cpu_per_call(unit_of_work, calls)
        measured["pool"] = await _cpu_per_call(pool_through_greenlet, calls)
        measured["greenlet"] = await _cpu_per_call(greenlet_alone, calls)
    finally:
        await storage.close()
    return measured


def _nothing() -> None:
    return None


def in_process_rows(kind: str, label: str, quick: bool) -> list[Row]:
    import uvloop

    conversations = IN_PROCESS_CONVERSATIONS // (4 if quick else 1)
    calls = TIMED_CALLS // (4 if quick else 1)
    log(f"layers {label}: the service in one process")
    with database(kind) as url:
        measured = uvloop.run(in_process(url, conversations, calls))
    return [
        Row(
            f"CPU per turn, IntakeService.handle in one process, {label}",
            fmt(measured["turn"], " µs"),
            note=f"{conversations} whole conversations, {CONCURRENCY} at a time, no HTTP",
        ),
        Row(
            f"CPU per unit of work entered and left, nothing run, {label}",
            fmt(measured["unit_of_work"], " µs"),
            fmt(measured["pool"], " µs"),
            ratio(measured["unit_of_work"], measured["pool"]),
            note="baseline: SQLAlchemy's pool checkout and check-in through greenlet_spawn",
        ),
        Row(
            "CPU per greenlet_spawn of nothing (SQLAlchemy's async hand-off)",
            fmt(measured["greenlet"], " µs"),
        ),
    ]


def rows(quick: bool = False, context: dict[str, Any] | None = None) -> list[Row]:
    kind, label = "postgres", "PostgreSQL"
    if postgres_available() is not None:
        kind, label = "sqlite", "SQLite"
    return server_rows(kind, label, quick) + in_process_rows(kind, label, quick)
