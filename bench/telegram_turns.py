"""Benchmark 3: Telegram webhook turns per second, with a fake Bot API in its own process.

The app runs with the Telegram channel in webhook mode, pointed at `bench.fake_telegram`
(INTAKE_TELEGRAM_API_BASE_URL). The load generator posts the benchmark conversation as
Telegram updates (/start, then messages and callback queries) for 50 chats at once, each
chat in order, as Telegram does. A 200 means the turn is committed; replies reach the fake
API afterwards (their cost is included in the server's CPU). Baseline: the same ceiling as
the web benchmark (insert-and-commit per request, same database kind, same concurrency);
it is measured here if the web benchmark did not run first.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from typing import Any

from bench.common import PYTHON, ROOT, Row, fmt, log, ratio
from bench.servers import app_server, ceiling_server, database, load, postgres_available
from bench.web_turns import timing

CONCURRENCY = 50


@contextlib.contextmanager
def fake_api() -> Iterator[tuple[str, str]]:
    proc = subprocess.Popen(
        [PYTHON, "-m", "bench.fake_telegram"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={"PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        url, kind = proc.stdout.readline().split()
        yield url, kind
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_backend(kind: str, quick: bool, context: dict[str, Any]) -> Row:
    label = "SQLite" if kind == "sqlite" else "PostgreSQL"
    t = timing(quick)
    ceiling = context.get("ceiling", {}).get(kind, {}).get(CONCURRENCY)
    with (
        database(kind) as url,
        fake_api() as (api_url, fake_kind),
        app_server(url, telegram_api=api_url) as (port, proc),
    ):
        log(f"telegram {label}: {CONCURRENCY} chats through the webhook")
        ours = load("telegram", port, concurrency=CONCURRENCY, server_pid=proc.pid, **t)
    if ceiling is None:
        with database(kind) as curl, ceiling_server(curl) as (cport, cproc):
            log(f"telegram {label}: ceiling")
            ceiling = load("ceiling", cport, concurrency=CONCURRENCY, server_pid=cproc.pid, **t)
    row = Row(
        f"telegram webhook turns/s, {label}, {CONCURRENCY} chats",
        fmt(ours["rate"], "/s"),
        fmt(ceiling["rate"], "/s"),
        ratio(ours["rate"], ceiling["rate"]),
        "",
        "",
    )
    row.note = (
        f"{ours['turns']} updates, {ours['conversations_completed']} conversations submitted, "
        f"{ours['errors']} errors {ours['first_errors'][:1]}, p50 {ours['p50_ms']:.0f} ms, "
        f"server CPU {ours['server_cpu_share']:.0%}, generator CPU "
        f"{ours['generator_cpu_share']:.0%}; fake Bot API: {fake_kind}"
    )
    return row


def rows(quick: bool = False, context: dict[str, Any] | None = None) -> list[Row]:
    context = context if context is not None else {}
    try:
        import telegram  # noqa: F401
    except ImportError:
        return [Row.skipped("telegram webhook turns/s", "python-telegram-bot not installed")]
    out = [run_backend("sqlite", quick, context)]
    reason = postgres_available()
    out.append(
        Row.skipped("telegram webhook turns/s, PostgreSQL", reason)
        if reason
        else run_backend("postgres", quick, context)
    )
    return out
