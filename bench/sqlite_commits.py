"""Benchmark: the SQLite writer's slow commits, with the WAL checkpointed beside the writer
(`storage.sqlite_checkpoint`, as a serving process runs) against SQLite's own checkpoints,
which the commit that fills the WAL to 1,000 pages runs before it returns.

In one process, without HTTP: two services on two fresh SQLite files, the same as
`build_service` makes them, one with its checkpointer stopped (the baseline). Whole benchmark
conversations, 50 at a time, through `IntakeService.handle`, alternated between the two in
rounds so that they share the machine's ups and downs. Every `commit()` the writer's
connection makes is timed on aiosqlite's thread: the bench wraps `sqlite3.connect` in this
process so that the connections it opens are a subclass timing `commit` (a measurement only;
nothing in the product is changed for it). A commit over 3 ms is one that waited for a
checkpoint's copy (or for the disk): the row gives the writer's time in such commits per
10,000 commits, the time every turn queued behind the single writer waited with it.

    .venv/bin/python -m bench --only commits
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import Row, fmt, log, ratio
from bench.servers import database
from storage.engine import normalize_url, sqlite_path

CONCURRENCY = 50
#: Conversations per round and variant, and rounds (each variant's share of the rounds).
ROUND_CONVERSATIONS = 100
ROUNDS = 6
#: An ordinary commit takes about 0.2 ms here, one that copies the WAL 3–8 ms (BENCHMARKS.md).
SLOW_MS = 3.0


class _TimedConnection(sqlite3.Connection):
    """A sqlite3 connection recording how long each `commit()` took, by database file."""

    timings: dict[str, list[float]] = {}  # noqa: RUF012 - one registry for the process

    def commit(self) -> None:
        started = time.perf_counter()
        super().commit()
        elapsed = (time.perf_counter() - started) * 1000
        path = self.__dict__.get("path")
        if path is None:
            path = self.path = str(
                Path(self.execute("PRAGMA database_list").fetchone()[2]).resolve()
            )
        _TimedConnection.timings.setdefault(path, []).append(elapsed)


@contextlib.contextmanager
def _timed_commits() -> Iterator[dict[str, list[float]]]:
    original = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", _TimedConnection)
        return original(*args, **kwargs)

    sqlite3.connect = connect  # type: ignore[assignment]
    _TimedConnection.timings = {}
    try:
        yield _TimedConnection.timings
    finally:
        sqlite3.connect = original


async def _measure(
    urls: dict[str, str], rounds: int, per_round: int, timings: dict[str, list[float]]
) -> None:
    """Run both services (`urls`: "beside" and "baseline"); the writer's commits land in
    `timings` by database file, the warm-up's left out."""
    from bench.script import web_conversations
    from bot.app import build_service
    from bot.config import Settings
    from storage.sqlalchemy_storage import SqlStorage

    services = {}
    for name, url in urls.items():
        service = await build_service(Settings.from_env({"INTAKE_DATABASE_URL": url}))
        assert isinstance(service.storage, SqlStorage)
        assert service.storage.checkpointer is not None
        if name == "baseline":  # SQLite's own checkpoints only, in the writer's commits
            await service.storage.checkpointer.stop()
        services[name] = service
    numbers = iter(range(10_000_000))

    async def many(name: str, count: int) -> None:
        await web_conversations(services[name], count, at_once=CONCURRENCY, numbers=numbers)

    try:
        for name in services:  # warm-up, not counted
            await many(name, CONCURRENCY)
        timings.clear()
        for number in range(rounds):
            for name in services if number % 2 == 0 else reversed(list(services)):
                await many(name, per_round)
    finally:
        for service in services.values():
            await service.storage.close()


def _database_file(url: str) -> str:
    """The key `_TimedConnection` records a SQLite URL's commits under."""
    path = sqlite_path(normalize_url(url))
    assert path is not None, "a SQLite file"
    return str(path.resolve())


def _summary(commits: list[float]) -> dict[str, float]:
    ordered = sorted(commits)
    slow = [value for value in ordered if value > SLOW_MS]
    count = max(1, len(ordered))
    return {
        "commits": len(ordered),
        "slow_per_10k": 10_000 * len(slow) / count,
        "slow_ms_per_10k": 10_000 * sum(slow) / count,
        "p999": ordered[min(len(ordered) - 1, int(0.999 * len(ordered)))] if ordered else 0.0,
        "max": ordered[-1] if ordered else 0.0,
    }


def rows(quick: bool = False, context: dict[str, Any] | None = None) -> list[Row]:
    import uvloop

    rounds = ROUNDS // (3 if quick else 1)
    log(f"commits SQLite: {rounds} rounds of {ROUND_CONVERSATIONS} conversations a variant")
    with (
        database("sqlite") as beside,
        database("sqlite") as baseline,
        # From before the services are built: they open their connections as they start.
        _timed_commits() as timings,
    ):
        urls = {"beside": beside, "baseline": baseline}
        uvloop.run(_measure(urls, rounds, ROUND_CONVERSATIONS, timings))
        ours, base = (_summary(timings.get(_database_file(urls[name]), [])) for name in urls)
    row = Row(
        f"SQLite writer: time in commits over {SLOW_MS:.0f} ms per 10,000, WAL copied beside it",
        fmt(ours["slow_ms_per_10k"], " ms"),
        fmt(base["slow_ms_per_10k"], " ms"),
        ratio(ours["slow_ms_per_10k"], base["slow_ms_per_10k"]),
        "< baseline",
        "yes" if ours["slow_ms_per_10k"] < base["slow_ms_per_10k"] else "NO",
    )
    row.note = (
        f"in one process, {CONCURRENCY} web conversations at a time through the service, "
        f"{rounds} alternated rounds; baseline: SQLite's own checkpoints in the writer's "
        f"commits (the checkpointer stopped); commits {ours['commits']} / {base['commits']}, "
        f"over {SLOW_MS:.0f} ms per 10,000 {ours['slow_per_10k']:.0f} / "
        f"{base['slow_per_10k']:.0f}, p99.9 {ours['p999']:.1f} / {base['p999']:.1f} ms, "
        f"slowest {ours['max']:.1f} / {base['max']:.1f} ms"
    )
    return [row]
