"""The bench's speed probe (bench/speed.py): how long a fixed loop took while a load ran, what
a latency row's note says of it against the saturated run, and when a missed row names the
machine."""

from __future__ import annotations

import sys
import threading
import time

from bench.disk import summarize, verdict
from bench.speed import (
    SLOWER_RATIO,
    SpeedProbe,
    fixed_work_ms,
    slower_by,
    speed_note,
)


def test_the_fixed_loop_is_timed_by_this_threads_cpu_clock() -> None:
    """Time spent waiting is not counted: with another thread taking the interpreter every
    fifth of a millisecond, the loops' own times add up to well under the wall time they
    took (a wall clock would give about all of it)."""
    started, stop = threading.Event(), threading.Event()

    def take_turns_with_the_probe() -> None:
        started.set()
        while not stop.is_set():
            sum(range(1_000))

    interval = sys.getswitchinterval()
    rival = threading.Thread(target=take_turns_with_the_probe)
    sys.setswitchinterval(0.0002)
    rival.start()
    started.wait()
    try:
        wall = time.perf_counter()
        timed = [fixed_work_ms() for _ in range(10)]
        wall = (time.perf_counter() - wall) * 1000
    finally:
        stop.set()
        rival.join()
        sys.setswitchinterval(interval)
    assert all(ms > 0 for ms in timed)
    assert sum(timed) < 0.8 * wall


def test_the_probe_samples_until_its_block_ends_and_gives_the_median() -> None:
    with SpeedProbe(interval=0.01) as probe:
        time.sleep(0.3)
    summary = probe.summary()
    assert summary["count"] >= 5
    assert summary["median_ms"] is not None and summary["median_ms"] > 0
    count = summary["count"]
    time.sleep(0.05)
    assert probe.summary()["count"] == count  # stopped with the block


def test_a_probe_with_no_sample_has_no_median() -> None:
    with SpeedProbe(interval=10) as probe:
        pass
    assert probe.summary() == {"count": 0, "median_ms": None}


def test_slower_by_is_the_ratio_of_the_medians_when_both_were_measured() -> None:
    fast, slow = {"count": 9, "median_ms": 1.0}, {"count": 9, "median_ms": 1.5}
    none = {"count": 0, "median_ms": None}
    assert slower_by(slow, fast) == 1.5
    assert slower_by(fast, slow) == 1.0 / 1.5
    assert slower_by(none, fast) is None
    assert slower_by(slow, none) is None
    assert slower_by(slow, None) is None


def test_a_note_gives_the_median_and_the_factor_against_the_saturated_run() -> None:
    saturated = {"count": 20, "median_ms": 1.02}
    assert speed_note({"count": 20, "median_ms": 1.43}, saturated) == (
        "1.43 ms (1.40x the saturated run's 1.02)"
    )
    assert speed_note({"count": 20, "median_ms": 1.43}, {"count": 0, "median_ms": None}) == (
        "1.43 ms"
    )
    assert speed_note({"count": 0, "median_ms": None}, saturated) == "not measured"


def test_a_missed_latency_target_names_the_machine_only_when_it_ran_slower() -> None:
    calm_disk, stormy_disk = summarize([0.4, 3.0]), summarize([0.4, 51.0])
    assert verdict(True, calm_disk, None, 2.0) == "yes"
    assert verdict(False, calm_disk, None, SLOWER_RATIO - 0.01) == "NO"
    assert verdict(False, calm_disk, None, None) == "NO"
    assert verdict(False, calm_disk, None, SLOWER_RATIO) == "NO (machine slower)"
    assert verdict(False, stormy_disk, 0.2, 1.5) == "NO (disk, CPU steal, machine slower)"
