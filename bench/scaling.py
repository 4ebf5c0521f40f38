"""Benchmark 5: web turns per second with 1, 2 and 4 workers on PostgreSQL.

`python -m bot serve --workers N` (N processes sharing the port with SO_REUSEPORT), 50
concurrent conversations to submission, as in the web benchmark. Baseline: the ceiling server
with the same number of workers (`bench.ceiling_server --workers N`). The notes give each
run's speed-up over one worker. On a 2-core machine that also runs PostgreSQL and the load
generator, more than 2 workers cannot add CPU; this shows whether they at least do not hurt.
"""

from __future__ import annotations

from typing import Any

from bench.common import Row, fmt, log, ratio
from bench.servers import app_server, ceiling_server, database, load, postgres_available
from bench.web_turns import timing

WORKERS = (1, 2, 4)
CONCURRENCY = 50


def rows(quick: bool = False, context: dict[str, Any] | None = None) -> list[Row]:
    reason = postgres_available()
    if reason:
        return [Row.skipped("scaling (workers, PostgreSQL)", reason)]
    t = timing(quick)
    results: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    for n in WORKERS:
        with (
            database("postgres") as url,
            database("postgres") as curl,
            app_server(url, workers=n) as (port, proc),
            ceiling_server(curl, workers=n) as (cport, cproc),
        ):
            log(f"scaling: {n} worker(s)")
            ours = load("web", port, concurrency=CONCURRENCY, server_pid=proc.pid, **t)
            ceiling = load("ceiling", cport, concurrency=CONCURRENCY, server_pid=cproc.pid, **t)
            results[n] = (ours, ceiling)
    one = results[1][0]["rate"]
    out = []
    for n, (ours, ceiling) in results.items():
        row = Row(
            f"scaling: web turns/s, PostgreSQL, {n} worker(s)",
            fmt(ours["rate"], "/s"),
            fmt(ceiling["rate"], "/s"),
            ratio(ours["rate"], ceiling["rate"]),
            "info (2 cores)",
            "",
        )
        row.note = (
            f"speed-up over 1 worker {ours['rate'] / one:.2f}x (ceiling "
            f"{ceiling['rate'] / results[1][1]['rate']:.2f}x); {ours['errors']} errors; server CPU "
            f"{ours['server_cpu_share']:.0%}, generator CPU {ours['generator_cpu_share']:.0%}"
        )
        out.append(row)
    return out
