"""What every benchmark shares: result rows, the table, and small process/network helpers."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = "127.0.0.1"
#: The PostgreSQL server used when INTAKE_BENCH_POSTGRES_URL is not set; each run makes its own
#: database (bench_<pid>_<n>) and drops it afterwards.
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
T = TypeVar("T")


@dataclass(slots=True)
class Row:
    benchmark: str
    ours: str = ""
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    met: str = ""
    #: Longer explanation printed under the table (what was measured, why it was skipped).
    note: str = ""

    @staticmethod
    def skipped(benchmark: str, reason: str) -> Row:
        return Row(benchmark, f"skipped: {reason}", "", "", "", "")


def fmt(value: float, unit: str = "", digits: int | None = None) -> str:
    if digits is None:
        digits = 0 if abs(value) >= 100 else (1 if abs(value) >= 10 else 2)
    return f"{value:,.{digits}f}{unit}"


def ratio(ours: float, baseline: float) -> str:
    if not baseline:
        return "n/a"
    return f"{ours / baseline:.2f}x"


def yes_no(ok: bool) -> str:
    return "yes" if ok else "NO"


def table(rows: Sequence[Row]) -> str:
    headers = ("benchmark", "ours", "baseline", "ratio", "target", "met?")
    cells = [headers] + [(r.benchmark, r.ours, r.baseline, r.ratio, r.target, r.met) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(c) for c in cells[1:]]
    return "\n".join(out)


def median_of(repeats: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    samples = [measure() for _ in range(repeats)]
    return statistics.median(samples), samples


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 120.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"server exited with code {proc.returncode} before listening on {port}"
            )
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {HOST}:{port} after {timeout}s")


@contextlib.contextmanager
def spawn(
    args: Sequence[str],
    env: dict[str, str] | None = None,
    port: int | None = None,
    log_path: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process for the duration of the block, then stop exactly that process."""
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONPATH", str(ROOT))
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        list(args), cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
    )
    try:
        if port is not None:
            wait_for_port(port, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log_path:
            out.close()  # type: ignore[union-attr]


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (VmRSS from /proc)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model}), Python {sys.version.split()[0]}"


def alternated_pairs(
    count: int, what: str, first: Callable[[], T], second: Callable[[], T]
) -> list[tuple[T, T]]:
    """`count` runs of `first` then `second`, alternated (for `median_by`)."""
    pairs: list[tuple[T, T]] = []
    for n in range(count):
        log(f"{what} #{n + 1}")
        pairs.append((first(), second()))
    return pairs


def median_by(items: Sequence[T], key: Callable[[T], float]) -> T:
    """The item whose `key` is the median (the upper one of an even count): of app and
    baseline runs measured alternately, the pair to show, since one pair alone is noise on a
    shared machine (BENCHMARKS.md)."""
    return sorted(items, key=key)[len(items) // 2]
