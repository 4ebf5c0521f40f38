"""Benchmark: a submission's insert into the report search index, one report a transaction.

PostgreSQL (SQLite's full-text table is in BENCHMARKS.md). A fresh database at the current
migration takes REPORTS reports, each with 60 words of free text drawn from a 20,000-word
vocabulary with natural word frequencies (Zipf's law: a word's share falls as one over its
rank, so a few words are in nearly every report and most in few, as in what people write),
one insert a transaction on the raw driver, as submissions arrive; each insert is timed, and
the WAL written meanwhile is divided among them. Ours: the search index as the migrations
leave it (0014: a 64 kB pending list). Baselines, the same reports into fresh databases:
PostgreSQL's default for GIN (a 4 MB pending list, where one insert every few thousand merges
the whole list), and no pending list (0013, each report's words into the index as it is
stored, each word's entry written to the WAL again). Targets: the slowest insert within a
turn's p99 budget, 50 ms; less WAL a report than without a pending list.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
import time
from datetime import UTC, datetime
from typing import Any

from bench import wal
from bench.common import Row, log, ratio, yes_no
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


#: The index's settings measured, by name: None for the current migration's; else what the
#: index is altered to first.
SETTINGS: dict[str, str | None] = {
    "ours": None,
    "default list": f"ALTER INDEX {INDEX} RESET (fastupdate, gin_pending_list_limit)",
    "no list": f"ALTER INDEX {INDEX} SET (fastupdate = off)",
}


def _texts(count: int) -> list[str]:
    rng = random.Random(16)
    vocabulary = [
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 10)))
        for _ in range(VOCABULARY)
    ]
    frequencies = [1 / rank for rank in range(1, VOCABULARY + 1)]
    return [
        " ".join(rng.choices(vocabulary, frequencies, k=WORDS_PER_REPORT)) for _ in range(count)
    ]


async def _insert_each(url: str, texts: list[str], alter: str | None) -> dict[str, Any]:
    """How long each insert took (`_summary`) into a database at the current migration, its
    index first altered by `alter`, and the WAL written a report ("wal_per_report", bytes)."""
    from storage.migrate import upgrade

    await upgrade(url)
    connection = await connect(url)
    try:
        if alter:
            await connection.execute(alter)
        now = datetime.now(UTC)
        times = []
        wal_before = await wal.position(connection)
        for i, text in enumerate(texts):
            reference = f"B{i:07d}"
            data = json.dumps(
                {"reference": reference, "priority": "routine", "what_happened": text}
            )
            started = time.perf_counter()
            await connection.execute(INSERT, reference, f"bench-{i}", now, data)
            times.append((time.perf_counter() - started) * 1000)
        # The whole server's WAL: on a quiet machine, these inserts'.
        written = await wal.written_since(connection, wal_before)
        return {**_summary(times), "wal_per_report": written / len(texts)}
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


def _times_note(measured: dict[str, Any]) -> str:
    return (
        f"p50 / p99.9 / slowest {measured['p50']:.2f} / {measured['p999']:.1f} / "
        f"{measured['slowest']:.1f} ms, {measured['over_50']} over {TARGET_SLOWEST_MS:.0f} ms, "
        f"{kib(measured['wal_per_report'])} of WAL a report"
    )


def kib(size: float) -> str:
    return f"{size / 1024:.1f} KiB"


def rows(quick: bool = False, context: dict[str, Any] | None = None) -> list[Row]:
    name = "report search index: slowest of {n:,} inserts, one a transaction, PostgreSQL"
    wal_name = "report search index: WAL a report, vs no pending list, PostgreSQL"
    reason = postgres_available()
    if reason:
        return [Row.skipped(name.format(n=REPORTS), reason), Row.skipped(wal_name, reason)]
    count = QUICK_REPORTS if quick else REPORTS
    texts = _texts(count)
    measured = {}
    for setting, alter in SETTINGS.items():
        log(f"report index: {count:,} reports, {setting}")
        with database("postgres") as url:
            measured[setting] = asyncio.run(_insert_each(url, texts, alter))
    ours, default, none = measured["ours"], measured["default list"], measured["no list"]
    words = f"{WORDS_PER_REPORT} words a report from {VOCABULARY:,}, at natural frequencies"
    return [
        Row(
            name.format(n=count),
            f"{ours['slowest']:.1f} ms",
            f"{default['slowest']:.1f} ms",
            f"{ours['slowest'] / default['slowest']:.2f}x",
            f"≤ {TARGET_SLOWEST_MS:.0f} ms",
            yes_no(ours["slowest"] <= TARGET_SLOWEST_MS),
            note=(
                f"{words}; ours (a 64 kB pending list, migration 0014): {_times_note(ours)}; "
                f"baseline: PostgreSQL's default list (4 MB, each merged inside one insert): "
                f"{_times_note(default)}; no list (0013): {_times_note(none)}"
            ),
        ),
        Row(
            wal_name,
            kib(ours["wal_per_report"]),
            kib(none["wal_per_report"]),
            ratio(ours["wal_per_report"], none["wal_per_report"]),
            "< baseline",
            yes_no(ours["wal_per_report"] < none["wal_per_report"]),
            note=(
                f"{words}, {count:,} reports one a transaction; baseline: the index without a "
                f"pending list (migration 0013), where each report rewrites its words' entries; "
                f"PostgreSQL's default 4 MB list: {kib(default['wal_per_report'])}"
            ),
        ),
    ]
