"""Reader for the regulator's monthly directory CSV (`DD_Month_YYYY_CQC_directory.csv`).

The file is not a plain CSV: it opens with a short preamble (title, blank, "This data was
produced on ...", blank), its phone numbers have lost their leading 0, service types are
`|`-joined and sometimes repeated, dates read `02/Apr/2020 - 00:00`, and older files spell a
few headers differently. This module turns it into `DirectoryLocation` records and reports
the rows it had to skip rather than failing the whole import on one bad row. It reads the
file as a stream (the real file has ~50,000 rows) and knows nothing about storage.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TextIO

from bot.directory.text import display_postcode
from bot.ports import DirectoryLocation

#: The header of the current file, in order (line 5 of the real file).
EXPECTED_HEADER: tuple[str, ...] = (
    "Name",
    "Also known as",
    "Address",
    "Postcode",
    "Phone number",
    "Service's website (if available)",
    "Service types",
    "Date of latest check",
    "Specialisms/services",
    "Provider name",
    "Local authority",
    "Region",
    "Location URL",
    "CQC Location ID (for office use only)",
    "CQC Provider ID (for office use only)",
)

#: Column spellings (compared case- and space-insensitively) -> DirectoryLocation field.
#: Older files (2017-2020) used "Local Authority" and "CQC Location (for office use only".
_COLUMN_ALIASES: dict[str, str] = {
    "name": "name",
    "also known as": "also_known_as",
    "address": "address",
    "postcode": "postcode",
    "phone number": "phone",
    "services website (if available)": "website",
    "service types": "service_types",
    "date of latest check": "last_checked",
    "specialisms/services": "specialisms",
    "provider name": "provider_name",
    "local authority": "local_authority",
    "region": "region",
    "location url": "url",
    "cqc location id (for office use only)": "location_id",
    "cqc location (for office use only": "location_id",
    "cqc location (for office use only)": "location_id",
    "cqc provider id (for office use only)": "provider_id",
    "cqc provider id (for office use only": "provider_id",
}
_REQUIRED = ("name", "location_id")

#: How far into the file the header may be (the preamble is 4 lines today).
MAX_PREAMBLE_LINES = 20

_PRODUCED_ON = re.compile(r"produced on\s+(.+?)\s*$", re.IGNORECASE)
_DATE = re.compile(
    r"^(\d{1,2})/([A-Za-z]{3,9}|\d{1,2})/(\d{4})(?:\s*-\s*\d{1,2}:\d{2}(?::\d{2})?)?$"
)
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_LOCATION_URL = "https://www.cqc.org.uk/location/{}"


class DirectoryFormatError(ValueError):
    """The file is not the regulator's directory CSV (no recognisable header)."""


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A data row that was skipped or overridden; `line` is the 1-based line in the file."""

    line: int
    reason: str
    location_id: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class ParsedDirectory:
    locations: list[DirectoryLocation]
    #: The preamble's date as written, e.g. "28 August 2025"; None when absent.
    produced_on: str | None = None
    skipped: list[RowProblem] = field(default_factory=list)


def parse_directory_csv(source: str | os.PathLike[str] | TextIO) -> ParsedDirectory:
    """Parse a directory CSV from a path or an open text file.

    Rows without a location id are skipped and reported; when an id repeats, the later row
    wins and the override is reported. Raises `DirectoryFormatError` when no directory header
    is found near the top of the file.
    """
    if isinstance(source, str | os.PathLike):
        try:
            with Path(source).open(encoding="utf-8-sig", newline="") as handle:
                return _parse(handle)
        except UnicodeDecodeError as exc:
            raise DirectoryFormatError(f"{source}: not UTF-8 text ({exc.reason})") from exc
    try:
        return _parse(source)
    except UnicodeDecodeError as exc:
        raise DirectoryFormatError(f"not UTF-8 text ({exc.reason})") from exc


def _parse(handle: TextIO | io.TextIOBase) -> ParsedDirectory:
    reader = csv.reader(handle)
    columns, produced_on = _read_header(reader)
    by_id: dict[str, DirectoryLocation] = {}
    first_line: dict[str, int] = {}
    skipped: list[RowProblem] = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue  # blank line, e.g. at the end of the file
        values = {key: (row[index] if index < len(row) else "") for key, index in columns.items()}
        line = reader.line_num
        location = _to_location(values)
        if not location.location_id:
            skipped.append(RowProblem(line, "no location id", "", location.name))
            continue
        if location.location_id in by_id:
            skipped.append(
                RowProblem(
                    line,
                    f"duplicate location id (first seen on line {first_line[location.location_id]});"
                    " this later row replaces it",
                    location.location_id,
                    location.name,
                )
            )
        else:
            first_line[location.location_id] = line
        by_id[location.location_id] = location
    return ParsedDirectory(list(by_id.values()), produced_on, skipped)


def _read_header(reader: Iterator[list[str]]) -> tuple[dict[str, int], str | None]:
    """Skip the preamble; return {field: column index} and the "produced on" date."""
    produced_on: str | None = None
    for _ in range(MAX_PREAMBLE_LINES):
        row = next(reader, None)
        if row is None:
            break
        cells = [cell.lstrip("\ufeff").strip() for cell in row]
        columns = _match_header(cells)
        if columns is not None:
            return columns, produced_on
        for cell in cells:
            found = _PRODUCED_ON.search(cell)
            if found and produced_on is None:
                produced_on = found.group(1)
    raise DirectoryFormatError(
        "not a CQC directory file: expected a header row within the first "
        f"{MAX_PREAMBLE_LINES} lines with the columns {', '.join(EXPECTED_HEADER)}"
        " (older files: 'Local Authority', 'CQC Location (for office use only')"
    )


def _match_header(cells: list[str]) -> dict[str, int] | None:
    columns: dict[str, int] = {}
    for index, cell in enumerate(cells):
        key = _COLUMN_ALIASES.get(_header_key(cell))
        if key is not None and key not in columns:
            columns[key] = index
    if all(key in columns for key in _REQUIRED):
        return columns
    return None


def _header_key(cell: str) -> str:
    return " ".join(cell.replace("'", "").replace("\u2019", "").lower().split())


def _to_location(values: dict[str, str]) -> DirectoryLocation:
    location_id = values.get("location_id", "").strip()
    url = values.get("url", "").strip()
    if not url and location_id:
        url = _LOCATION_URL.format(location_id)
    return DirectoryLocation(
        location_id=location_id,
        name=_clean(values.get("name", "")),
        also_known_as=_clean(values.get("also_known_as", "")),
        address=values.get("address", "").strip(),
        postcode=display_postcode(values.get("postcode", "")),
        phone=parse_phone(values.get("phone", "")),
        website=values.get("website", "").strip(),
        service_types=split_list(values.get("service_types", "")),
        specialisms=split_list(values.get("specialisms", "")),
        provider_name=_clean(values.get("provider_name", "")),
        provider_id=values.get("provider_id", "").strip(),
        local_authority=_clean(values.get("local_authority", "")),
        region=_clean(values.get("region", "")),
        url=url,
        last_checked=parse_check_date(values.get("last_checked", "")),
    )


def _clean(text: str) -> str:
    """Strip stray spaces and tabs (the source keeps e.g. " ASP Healthcare Services Ltd")."""
    return " ".join(text.split())


def split_list(text: str) -> tuple[str, ...]:
    """`A|B|A` -> ("A", "B"): the real file repeats types (`Doctors/GPs|Doctors/GPs`)."""
    items = (item.strip() for item in text.split("|"))
    return tuple(dict.fromkeys(item for item in items if item))


def parse_phone(text: str) -> str:
    """Put back the leading 0 that the published file drops from UK numbers.

    `1452471471` -> `01452471471`. Numbers of 9-10 digits without a 0 are national numbers
    with the 0 removed; `44...` with 12 digits is international. Anything else is kept as
    written, because guessing would invent a wrong number.
    """
    compact = re.sub(r"[\s\-().]", "", text)
    if not compact.isdigit():
        return text.strip()
    if compact.startswith("44") and len(compact) == 12:
        return "0" + compact[2:]
    if not compact.startswith("0") and len(compact) in (9, 10):
        return "0" + compact
    return compact


def parse_check_date(text: str) -> date | None:
    """`02/Apr/2020 - 00:00` (or `02/04/2020 - 00:00`, or ISO) -> date; None if unreadable."""
    text = text.strip()
    found = _DATE.match(text)
    try:
        if found:
            day, month_text, year = found.groups()
            month = int(month_text) if month_text.isdigit() else _MONTHS.get(month_text[:3].lower())
            return date(int(year), month, int(day)) if month else None
        iso = _ISO_DATE.match(text)
        if iso:
            return date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
    except ValueError:
        return None
    return None
