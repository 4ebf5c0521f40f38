"""How fast the machine ran a fixed piece of Python while a benchmark ran, to read a latency
row against the saturated run its rate came from.

A latency row's rate is half the rate the server reached saturated, a few seconds earlier. On
the virtual machines this bench has run on, the same work does not always cost the same CPU
time: with no CPU time stolen (`bench.steal`), a fixed loop took 1.5 ms of its thread's CPU
with the machine idle, 0.9–1.1 ms while the server was saturated, and 0.9 or 1.4–1.5 ms at
half that rate; in those half-load runs the server's CPU per web turn was 0.72–0.85 ms against
0.44–0.49 saturated and the p99 13 ms at 0.93 ms, 41–91 ms at 1.43–1.48 (BENCHMARKS.md,
2026-12-04 20:20). A run whose every piece of work took 1.4 times as long as when the rate
was set ran at about 70% of the machine it had, not 50%.

So every load run (`bench.servers.load`) times the loop every `INTERVAL_S` in a thread of
this process, by the thread's own CPU clock (time spent waiting for a CPU is not counted:
that is the busy share's), and a missed latency row says "machine slower" when the loop's
median took `SLOWER_RATIO` times or more what it took during the saturated run
(`bench.disk.verdict`); the note gives both.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.sampling import Sampler

#: The loop's size: about a millisecond of CPU on the machines measured, so that a sample
#: every `INTERVAL_S` costs the machine well under 1% of one CPU.
WORK_ITERATIONS = 20_000
INTERVAL_S = 0.25
#: The loop this many times slower than during the saturated run: the run's rate was well
#: over half of what the machine could do meanwhile.
SLOWER_RATIO = 1.25
#: What a note's loop figures are (`speed_note`).
SPEED_NOTE = (
    f"a fixed Python loop's CPU time (bench/speed.py, every {INTERVAL_S * 1000:.0f} ms, "
    "median, warm-up included)"
)


def fixed_work_ms() -> float:
    """This thread's CPU time, in ms, for the same loop every time."""
    start = time.thread_time_ns()
    total = 0
    for value in range(WORK_ITERATIONS):
        total += value * value % 7
    return (time.thread_time_ns() - start) / 1e6


class SpeedProbe(Sampler):
    """Times `fixed_work_ms` every `interval` seconds in a thread until the block ends."""

    def __init__(self, interval: float = INTERVAL_S) -> None:
        super().__init__(interval)

    def sample(self) -> float:
        return fixed_work_ms()

    def summary(self) -> dict[str, Any]:
        """How many samples, and their median in ms (None without any)."""
        median = statistics.median(self.samples) if self.samples else None
        return {"count": len(self.samples), "median_ms": median}


def slower_by(run: dict[str, Any] | None, baseline: dict[str, Any] | None) -> float | None:
    """How many times as long the loop took during `run` as during `baseline` (two
    `SpeedProbe.summary()`s); None when either has no sample."""
    if not run or not baseline:
        return None
    if run["median_ms"] is None or not baseline["median_ms"]:
        return None
    return float(run["median_ms"] / baseline["median_ms"])


def slowed(factor: float | None) -> bool:
    """Whether a run's loop took long enough against its saturated run's (`slower_by`) to
    explain a missed p99 by itself, as `bench.steal.stormy` says of the steal."""
    return factor is not None and factor >= SLOWER_RATIO


def speed_note(run: dict[str, Any], saturated: dict[str, Any]) -> str:
    """The loop's median during a run, and against the saturated run its rate came from, for
    a row's note (after `SPEED_NOTE`)."""
    if run["median_ms"] is None:
        return "not measured"
    factor = slower_by(run, saturated)
    if factor is None:
        return f"{run['median_ms']:.2f} ms"
    return f"{run['median_ms']:.2f} ms ({factor:.2f}x the saturated run's {saturated['median_ms']:.2f})"
