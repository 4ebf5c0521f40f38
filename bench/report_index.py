"""Benchmark: a submission's insert into the report search index, one report a transaction.

PostgreSQL (SQLite's full-text table is in BENCHMARKS.md). A fresh database at the current
migration takes REPORTS reports, each with 60 words of free text drawn from a 20,000-word
vocabulary, one insert a transaction on the raw driver, as submissions arrive; each insert is
timed. Ours: the search index as the migrations leave it (0013: no pending list, each
report's words go into the index as it is stored). Baseline: the same reports into a second
fresh database whose index has PostgreSQL's default for GIN (`fastupdate` on), where every
few thousand reports one insert merges the whole pending list. Target: the slowest insert
within a turn's p99 budget, 50 ms.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
import time
from datetime import UTC, datetime
from typing import Any

from bench.common import Row, log, yes_no
from bench.loadgen import percentile
from bench.servers import connect, database, postgres_available

REPORTS = 6_000
QUICK_REPORTS = 3_000
VOCABULARY = 20_000
WORDS_PER_REPORT = 60
TARGET_SLOWEST_MS = 50.0
INDEX = "ix_reports_fts"
INSERT = """INSERT INTO reports (reference, conversation_id, created_at, channel, locale,
    priority, data) VALUES ($1, $2, $3, 'web', 'en', 'routine', $4::jsonb)"""


def _texts(count: int) -> list[str]:
    rng = random.Random(16)
    vocabulary = [
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 10)))
        for _ in range(VOCABULARY)
    ]
    return [" ".join(rng.choices(vocabulary, k=WORDS_PER_REPORT)) for _ in range(count)]


async def _insert_each(url: str, texts: list[str], *, pending_list: bool) -> list[float]:
    """Milliseconds per insert into a database at the current migration."""
    from storage.migrate import upgrade

    await upgrade(url)
    connection = await connect(url)
    try:
        if pending_list:
            await connection.execute(f"ALTER INDEX {INDEX} RESET (fastupdate)")
        now = datetime.now(UTC)
        times = []
        for i, text in enumerate(texts):
            reference = f"B{i:07d}"
            data = json.dumps(
                {"reference": reference, "priority": "routine", "what_happened": text}
            )
            started = time.perf_counter()
            await connection.execute(INSERT, reference, f"bench-{i}", now, data)
            times.append((time.perf_counter() - started) * 1000)
        return times
    finally:
        await connection.close()


def _summary(times: list[float]) -> dict[str, Any]:
    ordered = sorted(times)
    return {
        "p50": percentile(ordered, 50),
        "p999": percentile(ordered, 99.9),
        "slowest": ordered[-1],
        "over_50": sum(t > TARGET_SLOWEST_MS for t in times),
    }


def rows(quick: bool = False, context: dict[str, Any] | None = None) -> list[Row]:
    name = "report search index: slowest of {n:,} inserts, one a transaction, PostgreSQL"
    reason = postgres_available()
    if reason:
        return [Row.skipped(name.format(n=REPORTS), reason)]
    count = QUICK_REPORTS if quick else REPORTS
    texts = _texts(count)
    measured = {}
    for pending_list in (False, True):
        log(f"report index: {count:,} reports, pending list {'on' if pending_list else 'off'}")
        with database("postgres") as url:
            times = asyncio.run(_insert_each(url, texts, pending_list=pending_list))
        measured[pending_list] = _summary(times)
    ours, base = measured[False], measured[True]
    return [
        Row(
            name.format(n=count),
            f"{ours['slowest']:.1f} ms",
            f"{base['slowest']:.1f} ms",
            f"{ours['slowest'] / base['slowest']:.2f}x",
            f"≤ {TARGET_SLOWEST_MS:.0f} ms",
            yes_no(ours["slowest"] <= TARGET_SLOWEST_MS),
            note=(
                f"{WORDS_PER_REPORT} words a report from {VOCABULARY:,}; p50 / p99.9 / slowest "
                f"{ours['p50']:.2f} / {ours['p999']:.1f} / {ours['slowest']:.1f} ms, "
                f"{ours['over_50']} over {TARGET_SLOWEST_MS:.0f} ms; baseline: the index with "
                f"PostgreSQL's default pending list (fastupdate on), {base['p50']:.2f} / "
                f"{base['p999']:.1f} / {base['slowest']:.1f} ms, {base['over_50']} over "
                f"{TARGET_SLOWEST_MS:.0f} ms (each its list merged inside one insert)"
            ),
        )
    ]
