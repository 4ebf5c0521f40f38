"""Measure search quality against hand-written cases.

A case is `{"query": ..., "expected_location_id": id or null, "kind": ...}`. A case with an
id passes when that id is among the top 3 results (what the bot offers as choices); a
`null` case (nonsense, or a service not in the file) passes only when nothing is returned,
because a confident wrong choice is worse than "none of these".

    python -m bot.directory.evaluate DIRECTORY.csv CASES.json [--verbose]

Exits 1 when a null case returned something (a false match), else 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.directory.csv_format import parse_directory_csv
from bot.directory.search import DirectoryIndex, DirectoryMatch

TOP_N = 3


@dataclass(frozen=True, slots=True)
class CaseResult:
    query: str
    kind: str
    expected_location_id: str | None
    found: tuple[DirectoryMatch, ...]
    #: 1-based rank of the expected location among the results; None when absent.
    rank: int | None

    @property
    def passed(self) -> bool:
        if self.expected_location_id is None:
            return not self.found
        return self.rank is not None


@dataclass(frozen=True, slots=True)
class QualityReport:
    results: tuple[CaseResult, ...]
    seconds_per_query: float

    @property
    def positives(self) -> list[CaseResult]:
        return [r for r in self.results if r.expected_location_id is not None]

    @property
    def negatives(self) -> list[CaseResult]:
        return [r for r in self.results if r.expected_location_id is None]

    @property
    def hits(self) -> int:
        return sum(r.passed for r in self.positives)

    @property
    def top1_hits(self) -> int:
        return sum(r.rank == 1 for r in self.positives)

    @property
    def hit_rate(self) -> float:
        """Top-3 hit rate over the cases that expect a location."""
        return self.hits / len(self.positives) if self.positives else 1.0

    @property
    def false_matches(self) -> int:
        return sum(not r.passed for r in self.negatives)

    @property
    def false_match_rate(self) -> float:
        """Share of null cases that wrongly returned something."""
        return self.false_matches / len(self.negatives) if self.negatives else 0.0


def load_cases(path: str | Path) -> list[dict[str, Any]]:
    cases = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(cases, list):
        raise ValueError(f"{path}: expected a JSON list of cases")
    return cases


def evaluate(index: DirectoryIndex, cases: Sequence[dict[str, Any]]) -> QualityReport:
    """Run every case against the index and collect top-3 ranks."""
    results: list[CaseResult] = []
    started = time.perf_counter()
    for case in cases:
        expected = case.get("expected_location_id")
        found = tuple(
            index.search(case["query"], service_type=case.get("service_type"), limit=TOP_N)
        )
        ids = [match.location.location_id for match in found]
        rank = ids.index(expected) + 1 if expected in ids else None
        results.append(CaseResult(case["query"], str(case.get("kind", "")), expected, found, rank))
    elapsed = time.perf_counter() - started
    return QualityReport(tuple(results), elapsed / max(len(cases), 1))


def format_report(report: QualityReport, *, verbose: bool = False) -> str:
    """A plain-text table: per kind, then the totals; failures (or all, verbose) listed."""
    lines: list[str] = []
    kinds: dict[str, list[CaseResult]] = {}
    for result in report.results:
        kinds.setdefault(result.kind or "-", []).append(result)
    lines.append(f"{'kind':<16} {'cases':>5} {'passed':>6}")
    for kind, results in sorted(kinds.items()):
        lines.append(f"{kind:<16} {len(results):>5} {sum(r.passed for r in results):>6}")
    lines.append("")
    positives, negatives = report.positives, report.negatives
    lines.append(
        f"top-3 hit rate: {report.hits}/{len(positives)} = {report.hit_rate:.1%}"
        f"   (top-1: {report.top1_hits}/{len(positives)})"
    )
    lines.append(
        f"null cases returning nothing: {len(negatives) - report.false_matches}/{len(negatives)}"
        f"   (false-match rate {report.false_match_rate:.1%})"
    )
    lines.append(f"mean time per query: {report.seconds_per_query * 1000:.2f} ms")
    shown = [r for r in report.results if verbose or not r.passed]
    if shown:
        lines.append("")
    for result in shown:
        mark = "ok  " if result.passed else "FAIL"
        lines.append(
            f"{mark} [{result.kind}] {result.query!r} -> expected {result.expected_location_id}"
        )
        for match in result.found:
            lines.append(
                f"       {match.score:5.1f}  {match.location.location_id:<16} {match.location.name}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Top-3 hit rate of the directory search.")
    parser.add_argument("csv", help="a directory CSV in the regulator's format")
    parser.add_argument("cases", help="a JSON list of search cases")
    parser.add_argument("--verbose", "-v", action="store_true", help="list every case")
    args = parser.parse_args(argv)
    parsed = parse_directory_csv(args.csv)
    index = DirectoryIndex.build(parsed.locations)
    report = evaluate(index, load_cases(args.cases))
    print(f"{len(index)} locations, {len(report.results)} cases")
    print(format_report(report, verbose=args.verbose))
    return 0 if report.false_matches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
