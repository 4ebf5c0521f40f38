"""The web benchmark's target row (bench/web_turns.py) shows the pair of alternated app and
ceiling runs whose ratio is the median, not whichever pair came first."""

from __future__ import annotations

from bench.web_turns import median_pair


def _pair(app: float, ceiling: float) -> tuple[dict[str, float], dict[str, float]]:
    return {"rate": app}, {"rate": ceiling}


def test_the_pair_with_the_median_ratio_is_shown() -> None:
    low, middle, high = _pair(900, 2100), _pair(1000, 2000), _pair(1000, 1700)
    assert median_pair([low, high, middle]) is middle
    assert median_pair([high, middle, low]) is middle


def test_one_pair_is_itself() -> None:
    only = _pair(500, 1000)
    assert median_pair([only]) is only
