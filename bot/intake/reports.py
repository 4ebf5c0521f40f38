"""Reports as the intake team reads them: JSON lines or CSV, choice answers by id and in
English, free text exactly as written, and the conversation's language."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from bot.engine.dialog import Dialog
from bot.i18n import Catalogs
from bot.ports import StoredReport

#: The fields every export has, in this order (the spec's list, then a few more).
EXPORT_FIELDS: tuple[str, ...] = (
    "reference",
    "created_at",
    "channel",
    "locale",
    "priority",
    "urgent",
    "urgent_review",
    "experience",
    "service_type",
    "service_other",
    "provider_text",
    "provider_name",
    "location_id",
    "relationship",
    "works_there",
    "when",
    "service_part",
    "what_happened",
    "share_with_service",
    "risk",
    "authorities",
    "complaint",
    "mha",
    "contact",
    "alerts",
    "referral",
    "referral_name",
)

#: Exported fields whose value is a choice id of the step with the same id.
CHOICE_FIELDS: tuple[str, ...] = (
    "experience",
    "service_type",
    "relationship",
    "works_there",
    "risk",
    "authorities",
    "complaint",
    "mha",
    "alerts",
    "share_with_service",
    "referral",
)

#: Spreadsheet programs run cells that start with these as formulas (CSV injection).
_FORMULA_START = ("=", "@", "\t", "\r")
#: A cell starting with + or - is a formula too, unless it is a signed number: a phone number
#: in E.164 (+447700900123, as contact numbers are stored) or -5. Digits alone call no
#: function, reference no cell and start no program, so they are data and stay as typed.
_SIGNED_NUMBER = re.compile(r"[+-][0-9]+(?:\.[0-9]+)?")


class ReportFormatter:
    def __init__(self, dialog: Dialog, catalogs: Catalogs) -> None:
        self._labels: dict[str, dict[str, str]] = {}
        for field_name in CHOICE_FIELDS:
            step = dialog.by_id.get(field_name)
            if step is not None:
                self._labels[field_name] = {
                    c.id: catalogs.render(c.label, "en") for c in step.choices
                }

    def record(self, report: StoredReport) -> dict[str, Any]:
        data = report.data
        record = {name: data.get(name) for name in EXPORT_FIELDS}
        record["labels_en"] = {
            name: self._labels[name].get(str(data.get(name)))
            for name in CHOICE_FIELDS
            if data.get(name) is not None and name in self._labels
        }
        return record

    def jsonl(self, reports: Iterable[StoredReport]) -> Iterator[str]:
        for report in reports:
            yield json.dumps(self.record(report), ensure_ascii=False) + "\n"

    def csv(self, reports: Iterable[StoredReport]) -> Iterator[str]:
        columns = [
            *(f for f in EXPORT_FIELDS if f != "contact"),
            "contact_name",
            "contact_email",
            "contact_phone",
            *(f"{name}_en" for name in CHOICE_FIELDS),
        ]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\r\n")
        writer.writeheader()
        for report in reports:
            record = self.record(report)
            contact = record.pop("contact") or {}
            labels = record.pop("labels_en")
            row = {
                **record,
                "contact_name": contact.get("name"),
                "contact_email": contact.get("email"),
                "contact_phone": contact.get("phone"),
                **{f"{name}_en": labels.get(name) for name in CHOICE_FIELDS},
            }
            writer.writerow({k: _cell(v) for k, v in row.items()})
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return "'" + text if _runs_as_formula(text) else text


def _runs_as_formula(text: str) -> bool:
    """Whether a spreadsheet would take the cell for a formula (OWASP's CSV injection list),
    leaving out signed numbers, which are values (a phone number keeps its "+")."""
    if text.startswith(_FORMULA_START):
        return True
    return text.startswith(("+", "-")) and not _SIGNED_NUMBER.fullmatch(text)
