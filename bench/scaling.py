"""Benchmark 5: web turns per second with 1, 2 and 4 workers on PostgreSQL.

`python -m bot serve --workers N` (N processes sharing the port with SO_REUSEPORT), 50
concurrent conversations to submission, as in the web benchmark. Baseline: the ceiling server
with the same number of workers (`bench.ceiling_server --workers N`). The notes give each
run's speed-up over one worker. On a 2-core machine that also runs PostgreSQL and the load
generator, more than 2 workers cannot add CPU; this shows whether they at least do not hurt.

A last row measures the database's own limit beside the product: `pgbench` (PostgreSQL's own
C client, prepared statements) running its built-in simple-update transaction (BEGIN; UPDATE;
SELECT; INSERT; END: a durable multi-statement write, like a turn) with 50 clients on a fresh
database, against the product's best rate above. Without pgbench on PATH the row says so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

from bench.common import Row, fmt, log, ratio
from bench.servers import (
    app_server,
    ceiling_server,
    database,
    load,
    postgres_available,
    postgres_url,
)
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
        log(f"scaling: {n} worker(s)")
        # One server at a time: with 4 workers each, the product's pools and the ceiling's
        # together wanted more connections than PostgreSQL allows (max_connections, 100 by
        # default), and the ceiling's requests failed (0/s).
        with database("postgres") as url, app_server(url, workers=n) as (port, proc):
            ours = load("web", port, concurrency=CONCURRENCY, server_pid=proc.pid, **t)
        with database("postgres") as curl, ceiling_server(curl, workers=n) as (cport, cproc):
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
            f"{ceiling['rate'] / results[1][1]['rate']:.2f}x); {ours['errors']} errors (ceiling "
            f"{ceiling['errors']}); server CPU "
            f"{ours['server_cpu_share']:.0%}, generator CPU {ours['generator_cpu_share']:.0%}"
        )
        out.append(row)
    best = max(ours["rate"] for ours, _ in results.values())
    out.append(pgbench_row(best, t["duration"]))
    return out


def pgbench_row(best: float, duration: float) -> Row:
    """The database's own transaction rate on this machine (pgbench), against the product's."""
    name = "database limit: pgbench simple-update tps, 50 clients"
    if shutil.which("pgbench") is None:
        return Row.skipped(name, "pgbench not on PATH (apt-get install postgresql-client)")
    from sqlalchemy.engine import make_url

    with database("postgres") as url:
        parsed = make_url(url)
        connect = [
            f"--host={parsed.host or '127.0.0.1'}",
            f"--port={parsed.port or 5432}",
            f"--username={parsed.username or 'postgres'}",
        ]
        env = {"PGPASSWORD": parsed.password} if parsed.password else {}
        log("scaling: pgbench (the database's own limit)")
        run = {"capture_output": True, "text": True, "timeout": duration + 120}
        init = subprocess.run(
            ["pgbench", "-i", "-q", "-s", "1", *connect, str(parsed.database)],
            env={**_environ(), **env},
            **run,  # type: ignore[call-overload]
        )
        if init.returncode != 0:
            return Row.skipped(name, f"pgbench -i failed: {init.stderr.strip()[-120:]}")
        options = [
            "-N",
            "-M",
            "prepared",
            "-c",
            "50",
            "-j",
            "2",
            "-T",
            str(max(1, round(duration))),
        ]
        done = subprocess.run(
            ["pgbench", *options, *connect, str(parsed.database)],
            env={**_environ(), **env},
            **run,  # type: ignore[call-overload]
        )
    match = re.search(r"tps = ([\d.]+)", done.stdout)
    if match is None:
        return Row.skipped(name, f"pgbench failed: {done.stderr.strip()[-120:]}")
    tps = float(match.group(1))
    row = Row(name, fmt(best, "/s"), fmt(tps, "/s"), ratio(best, tps), "info", "")
    row.note = (
        "ours: the best web turns/s of the worker rows above; baseline: pgbench -N -M prepared "
        f"-c 50 -j 2 on a fresh database ({postgres_url().split('@')[-1]}), same machine. "
        "What PostgreSQL itself sustains for a small durable write transaction here"
    )
    return row


def _environ() -> dict[str, str]:
    return dict(os.environ)
