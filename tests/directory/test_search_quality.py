"""Search quality on the real directory sample (shared/data, not copied into the project).

The cases in search_cases.json were written by hand from the sample's rows, as people would
type them. A case passes when the expected location is among the 3 choices offered; a null
case passes only when nothing is offered.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.directory import DirectoryIndex, parse_directory_csv
from bot.directory.evaluate import evaluate, format_report, load_cases
from bot.ports import DirectoryLocation

CASES = Path(__file__).resolve().parent / "search_cases.json"
SAMPLE = Path(
    os.environ.get(
        "INTAKE_DIRECTORY_SAMPLE",
        Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cqc-directory-sample.csv",
    )
)
MIN_HIT_RATE = 0.90


@pytest.fixture(scope="module")
def sample_locations() -> list[DirectoryLocation]:
    if not SAMPLE.is_file():
        pytest.skip(
            f"real directory sample not found at {SAMPLE}; "
            "set INTAKE_DIRECTORY_SAMPLE to the cqc-directory-sample.csv path"
        )
    return parse_directory_csv(SAMPLE).locations


@pytest.fixture(scope="module")
def sample_index(sample_locations) -> DirectoryIndex:
    return DirectoryIndex.build(sample_locations)


def test_cases_are_well_formed():
    cases = load_cases(CASES)
    assert len(cases) >= 40
    assert sum(case["expected_location_id"] is None for case in cases) >= 6
    assert len({case["query"] for case in cases}) == len(cases)
    for case in cases:
        assert set(case) >= {"query", "expected_location_id", "kind"}


def test_expected_locations_exist_in_the_sample(sample_locations):
    known = {location.location_id for location in sample_locations}
    missing = [
        case["expected_location_id"]
        for case in load_cases(CASES)
        if case["expected_location_id"] and case["expected_location_id"] not in known
    ]
    assert missing == []


def test_top3_hit_rate_and_no_false_matches(sample_index):
    report = evaluate(sample_index, load_cases(CASES))
    print()
    print(format_report(report))
    assert report.hit_rate >= MIN_HIT_RATE, format_report(report)
    assert report.false_matches == 0, format_report(report)
