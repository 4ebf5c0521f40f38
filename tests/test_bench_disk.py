"""The bench's disk probe (bench/disk.py): what a latency row's note says about the disk."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.disk import SLOW_MS, FsyncProbe, disk_note, probed, summarize, verdict


def test_the_probe_times_writes_in_its_directory_and_leaves_no_file(tmp_path: Path) -> None:
    with FsyncProbe(str(tmp_path), interval=0.01) as disk:
        # Until a few writes are timed: on a stormy shared disk one fdatasync can take 200 ms.
        deadline = time.monotonic() + 30
        while disk.summary()["count"] < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [path.name[:18] for path in tmp_path.iterdir()] == ["intake-bench-disk-"]
    summary = disk.summary()
    assert summary["count"] >= 3
    assert 0 < summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert list(tmp_path.iterdir()) == []


def test_the_summary_counts_the_writes_slower_than_a_rows_budget() -> None:
    latencies = [0.5] * 97 + [SLOW_MS + 1, 120.0, 0.4]
    summary = summarize(latencies)
    assert summary == {"count": 100, "p50_ms": 0.5, "p99_ms": 51.0, "max_ms": 120.0, "slow": 2}
    assert disk_note(summary) == "p50 / p99 / max 0.5 / 51.0 / 120.0 ms, 2 of 100 over 50 ms"


def test_a_probe_that_saw_nothing_says_so() -> None:
    assert disk_note(summarize([])) == "not probed"


def test_probed_gives_the_runs_result_with_the_disk_meanwhile() -> None:
    def measure() -> dict[str, Any]:
        time.sleep(0.3)
        return {"p99_ms": 7.0}

    result = probed(measure)
    assert result["p99_ms"] == 7.0
    # The first write starts 50 ms in, and the probe is joined (its write timed) at the end.
    assert result["disk"]["count"] >= 1


def test_a_missed_latency_target_names_the_disk_only_when_it_stalled() -> None:
    calm, stormy = summarize([0.4, 3.0]), summarize([0.4, SLOW_MS + 1])
    assert verdict(True, stormy) == "yes"
    assert verdict(False, calm) == "NO"
    assert verdict(False, stormy) == "NO (disk)"
