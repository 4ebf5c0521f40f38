"""The benchmarks' target rows that compare two alternated runs (bench/web_turns.py,
bench/telegram_turns.py) show the pair whose ratio is the median, not whichever came first."""

from __future__ import annotations

from typing import Any

from bench.common import median_by
from bench.telegram_turns import p50_ratio
from bench.web_turns import rate_ratio


def _pair(ours: float, baseline: float, field: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return {field: ours}, {field: baseline}


def test_the_web_pair_with_the_median_ratio_is_shown() -> None:
    low, middle, high = (
        _pair(*rates, "rate") for rates in ((900, 2100), (1000, 2000), (1000, 1700))
    )
    assert median_by([low, high, middle], rate_ratio) is middle
    assert median_by([high, middle, low], rate_ratio) is middle


def test_the_telegram_pair_with_the_median_ratio_of_p50s_is_shown() -> None:
    low, middle, high = (_pair(*p50s, "p50_ms") for p50s in ((2.0, 2.0), (3.0, 2.0), (4.0, 2.0)))
    assert median_by([high, low, middle], p50_ratio) is middle


def test_one_pair_is_itself() -> None:
    only = _pair(500, 1000, "rate")
    assert median_by([only], rate_ratio) is only
