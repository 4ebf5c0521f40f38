"""The disk's own commit latency while a benchmark runs, to read a latency row against.

Every commit, SQLite's (synchronous=FULL) and PostgreSQL's, waits for an fdatasync, and on a
shared virtual disk one of them sometimes takes 100-200 ms, idle machine or not (BENCHMARKS.md,
"The disk's own stalls"). SQLite has one writer, so such an fdatasync holds up every turn behind
it, and a p99 of 50 ms is out of reach for the product and the ceiling alike whenever they come
more than once in a hundred turns. `FsyncProbe` writes 4 KiB in place and fdatasyncs it, as a
commit does, every 50 ms on a thread of its own in the bench's process while a row is measured,
in the temporary directory where `bench.servers.database` puts SQLite's files; its summary
goes into the row's note. Twenty small writes a second beside the hundreds of commits measured.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench.common import yes_no
from bench.loadgen import percentile
from bench.sampling import Sampler
from bench.speed import slowed
from bench.steal import stormy

#: The probe's write: one page, as a small commit writes.
PROBE_BYTES = 4096
#: Written again in place (the file never grows, as a recycled WAL segment does not).
PROBE_FILE_BYTES = 64 * PROBE_BYTES
PROBE_INTERVAL_S = 0.05
#: An fdatasync this slow alone takes a latency row's whole p99 budget.
SLOW_MS = 50.0


class FsyncProbe(Sampler):
    """`with FsyncProbe() as disk: ...` then `disk.summary()`."""

    def __init__(self, directory: str | None = None, interval: float = PROBE_INTERVAL_S) -> None:
        super().__init__(interval)
        self._directory = directory or tempfile.gettempdir()
        self._descriptor = -1
        self._path = ""
        self._page = b"x" * PROBE_BYTES
        self._offset = 0

    def open(self) -> None:
        self._descriptor, self._path = tempfile.mkstemp(
            prefix="intake-bench-disk-", dir=self._directory
        )
        os.write(self._descriptor, b"\0" * PROBE_FILE_BYTES)
        os.fsync(self._descriptor)

    def sample(self) -> float:
        """One page written in place and fdatasynced, in ms."""
        started = time.perf_counter()
        os.pwrite(self._descriptor, self._page, self._offset)
        os.fdatasync(self._descriptor)
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._offset = (self._offset + PROBE_BYTES) % PROBE_FILE_BYTES
        return elapsed_ms

    def close(self) -> None:
        os.close(self._descriptor)
        with contextlib.suppress(OSError):
            os.unlink(self._path)

    def summary(self) -> dict[str, Any]:
        return summarize(self.samples)


def summarize(latencies_ms: list[float]) -> dict[str, Any]:
    ordered = sorted(latencies_ms)
    return {
        "count": len(ordered),
        "p50_ms": percentile(ordered, 50),
        "p99_ms": percentile(ordered, 99),
        "max_ms": ordered[-1] if ordered else float("nan"),
        "slow": sum(1 for value in ordered if value > SLOW_MS),
    }


def probed(measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`measure()`'s result (a load run's), with what the disk did meanwhile as its "disk"."""
    with FsyncProbe() as disk:
        result = measure()
    return {**result, "disk": disk.summary()}


#: What a note's disk figures are (`disk_note`).
PROBE_NOTE = (
    f"the disk's own 4 KiB fdatasync every {PROBE_INTERVAL_S * 1000:.0f} ms (bench/disk.py, "
    "warm-up included)"
)


def disk_note(summary: dict[str, Any]) -> str:
    """What the probe saw, for a row's note (after `PROBE_NOTE`)."""
    if not summary["count"]:
        return "not probed"
    return (
        f"p50 / p99 / max {summary['p50_ms']:.1f} / {summary['p99_ms']:.1f} / "
        f"{summary['max_ms']:.1f} ms, {summary['slow']} of {summary['count']} over "
        f"{SLOW_MS:.0f} ms"
    )


def verdict(
    met: bool, summary: dict[str, Any], steal: float | None = None, slower: float | None = None
) -> str:
    """A latency row's "met?": "NO (disk)" when the probe saw an fdatasync over `SLOW_MS` (the
    rows' p99 budget) meanwhile, "NO (CPU steal)" when the host took a tenth or more of the CPU
    time (`bench.steal`), "NO (machine slower)" when a fixed loop took `bench.speed.SLOWER_RATIO`
    times or more as long as during the saturated run the rate came from (`slower`,
    `bench.speed.slower_by`), all that happened, so that a miss the machine can explain reads
    as one at a glance; the note has the figures. A miss on a calm machine is a plain NO."""
    causes = [
        name
        for name, seen in (
            ("disk", summary["slow"]),
            ("CPU steal", stormy(steal)),
            ("machine slower", slowed(slower)),
        )
        if seen
    ]
    if met or not causes:
        return yes_no(met)
    return f"NO ({', '.join(causes)})"
