"""The bench's CPU readings (bench/steal.py): what a latency row's note says about the CPU
time the host gave to other guests and how busy the machine's CPUs were, and when a missed
row names the steal."""

from __future__ import annotations

import time
from pathlib import Path

from bench.disk import summarize, verdict
from bench.steal import (
    SLOW_SHARE,
    busy_share,
    cpu_times,
    read_cpu_times,
    share_note,
    stolen_share,
)

# /proc/stat as Linux writes it: the aggregate line first, then one line per CPU.
STAT = """cpu  157044 0 50136 1276634 12025 0 10074 15376 0 0
cpu0 78000 0 25000 638000 6000 0 5000 7700 0 0
cpu1 79044 0 25136 638634 6025 0 5074 7676 0 0
intr 1 2 3
"""


def test_the_aggregate_line_is_read_with_its_steal_field() -> None:
    assert cpu_times(STAT) == [157044, 0, 50136, 1276634, 12025, 0, 10074, 15376, 0, 0]


def test_a_kernel_without_a_steal_field_gives_no_reading() -> None:
    assert cpu_times("cpu  1 2 3 4 5 6 7\n") is None
    assert cpu_times("intr 1 2 3\n") is None
    assert read_cpu_times(Path("/nonexistent/stat")) is None


def test_the_stolen_share_is_of_all_the_cpu_time_between_two_readings() -> None:
    before = [100, 0, 50, 1000, 10, 0, 5, 20, 7, 0]
    # 400 ticks passed: 100 stolen. guest time (the 9th field) is inside user time already.
    after = [250, 0, 100, 1090, 20, 0, 5, 120, 57, 0]
    assert stolen_share(before, after) == 100 / 400


def test_the_busy_share_leaves_out_idle_disk_waits_and_stolen_time() -> None:
    before = [100, 0, 50, 1000, 10, 0, 5, 20, 7, 0]
    # 400 ticks passed: user 150 + nice 10 + system 50 + irq 5 + softirq 15 ran something;
    # idle 90, iowait 30 and steal 50 did not. guest time is inside user time already.
    after = [250, 10, 100, 1090, 40, 5, 20, 70, 57, 0]
    assert busy_share(before, after) == (150 + 10 + 50 + 5 + 15) / 400
    assert stolen_share(before, after) == 50 / 400


def test_no_share_without_both_readings_or_without_time_passing() -> None:
    reading = [1, 0, 1, 1, 0, 0, 0, 0]
    for share in (stolen_share, busy_share):
        assert share(None, reading) is None
        assert share(reading, None) is None
        assert share(reading, list(reading)) is None


def test_this_machine_gives_a_share_between_none_and_all() -> None:
    before = read_cpu_times()
    if before is None:  # not Linux: the rows say "not measured"
        assert share_note(None) == "not measured"
        return
    deadline = time.monotonic() + 0.05
    while time.monotonic() < deadline:  # this process keeps a CPU busy meanwhile
        pass
    after = read_cpu_times()
    stolen = stolen_share(before, after)
    assert stolen is None or 0.0 <= stolen <= 1.0
    busy = busy_share(before, after)
    assert busy is not None and 0.0 < busy <= 1.0


def test_a_note_gives_the_share_as_a_percentage() -> None:
    assert share_note(0.222) == "22%"
    assert share_note(None) == "not measured"


def test_a_missed_latency_target_names_the_steal_only_when_a_tenth_was_taken() -> None:
    calm_disk, stormy_disk = summarize([0.4, 3.0]), summarize([0.4, 51.0])
    assert verdict(True, calm_disk, 0.5) == "yes"
    assert verdict(False, calm_disk, SLOW_SHARE - 0.01) == "NO"
    assert verdict(False, calm_disk, None) == "NO"
    assert verdict(False, calm_disk, SLOW_SHARE) == "NO (CPU steal)"
    assert verdict(False, stormy_disk, 0.2) == "NO (disk, CPU steal)"
    assert verdict(False, stormy_disk) == "NO (disk)"
