"""The machine's CPUs while a benchmark ran, to read a latency row against: the time the
hypervisor gave away, and how busy they were.

On a virtual machine, `steal` in /proc/stat counts the time each virtual CPU was ready to run
and the host ran something else. This machine is shared: in five back-to-back open-loop runs
of the same server at the same rate (BENCHMARKS.md, 2026-12-03), the web turn's p99 was 197,
60, 21, 17 and 25 ms while 22, 11, 5, 2 and 8% of the CPU time was stolen. A p99 of 50 ms is
out of reach for the product and the ceiling alike when a tenth of the CPU is taken away in
bursts, so each run records the share stolen (`bench.servers.load`, warm-up included), and a
missed latency row says so (`bench.disk.verdict`). Linux only; elsewhere "not measured".

The same readings give how busy the machine's CPUs were (`busy_share`): the server, its
database and the load generator share them, and at half the saturated rate a turn costs
each of them more than saturated (BENCHMARKS.md, "Half the rate is not half the work").
Telegram PostgreSQL rounds at half load, with no batch slow to commit and no steal, had p99s
of 15 to 83 ms while the machine's two CPUs were 63–70% busy (BENCHMARKS.md, 2026-12-04
18:25–19:45): a tail of processes waiting for a CPU, which a latency row's note now shows
beside the disk's and the host's share.
"""

from __future__ import annotations

from pathlib import Path

#: The aggregate line's fields: user nice system idle iowait irq softirq steal guest guest_nice.
STEAL_FIELD = 7
#: The fields in which a CPU had nothing to run: idle, and idle waiting for the disk.
IDLE_FIELDS = (3, 4)
#: Stolen this much of the CPU time over a run, the machine alone can explain a missed p99.
SLOW_SHARE = 0.10


def cpu_times(stat: str) -> list[int] | None:
    """The aggregate `cpu` line's times (clock ticks) from /proc/stat's text, or None when
    it has no steal field (an old kernel, not Linux)."""
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            times = [int(value) for value in fields[1:]]
            return times if len(times) > STEAL_FIELD else None
    return None


def read_cpu_times(path: Path = Path("/proc/stat")) -> list[int] | None:
    try:
        return cpu_times(path.read_text())
    except OSError:
        return None


def stolen_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """The share of all CPU time between two readings that was stolen, 0 to 1; None when
    either reading is missing or no time passed (`_spent`)."""
    spent = _spent(before, after)
    return spent[STEAL_FIELD] / sum(spent) if spent is not None else None


def busy_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """The share of all CPU time between two readings in which the CPUs ran something (any
    process, the kernel, interrupts), 0 to 1; None as for `stolen_share`. Idle time, time
    idle waiting for the disk, and stolen time are not busy."""
    spent = _spent(before, after)
    if spent is None:
        return None
    not_running = sum(spent[field] for field in IDLE_FIELDS) + spent[STEAL_FIELD]
    return (sum(spent) - not_running) / sum(spent)


def _spent(before: list[int] | None, after: list[int] | None) -> list[int] | None:
    """Ticks spent in each field up to steal between two readings; None when either is
    missing or no time passed. guest and guest_nice are already counted in user and nice,
    so they are left out."""
    if before is None or after is None:
        return None
    spent = [now - then for then, now in zip(before[: STEAL_FIELD + 1], after, strict=False)]
    return spent if sum(spent) > 0 else None


#: What a note's steal figure is.
STEAL_NOTE = "CPU time the host gave to others (steal, bench/steal.py, warm-up included)"
#: What a note's busy figure is.
BUSY_NOTE = "the machine's CPUs busy (every process, bench/steal.py, warm-up included)"


def share_note(share: float | None) -> str:
    """A run's stolen or busy share, for a row's note."""
    return "not measured" if share is None else f"{share:.0%}"


def stormy(share: float | None) -> bool:
    """Whether a run lost enough CPU to the host to explain a missed p99 by itself."""
    return share is not None and share >= SLOW_SHARE
