"""Helpers for the "keeps nothing" tests: a conversation whose every free-text answer and
contact detail carries one unique marker, and a search for that marker in every table.

The tables are read from the database itself (and checked against the models' metadata), not
from a hand-written list, so a table added later is searched too.
"""

from __future__ import annotations

import json
import secrets
import string
import warnings
from typing import Any

from sqlalchemy import Connection, MetaData, Table, inspect, select
from sqlalchemy.exc import SAWarning
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.models import metadata


def new_marker() -> str:
    """Letters only, so that every validator (names, emails) keeps it as typed."""
    return "Zq" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(12))


def path_to_summary(marker: str) -> list[tuple[str, str]]:
    """From the welcome to the summary, typing the marker into every free-text answer: the
    service described, the provider searched for, when, the part of the service, what
    happened, the contact name and email, and the organisation that pointed them here."""
    return [
        ("choice", "start"),
        ("choice", "poor"),
        ("choice", "other"),
        ("text", f"A {marker} clinic"),
        ("text", f"Qwxz {marker} Place"),
        ("choice", "friend_family"),
        ("text", f"Since {marker} March"),
        ("text", f"The {marker} ward"),
        ("text", f"They {marker} left him alone"),
        ("choice", "yes"),  # may share with the service
        ("choice", "no"),
        ("choice", "neither"),
        ("choice", "not_yet"),
        ("choice", "continue"),
        ("choice", "yes"),
        ("text", f"Sam {marker}"),
        ("text", f"{marker.lower()}@example.org"),
        ("choice", "skip"),
        ("choice", "yes"),  # an organisation pointed them here
        ("text", f"The {marker} advocacy project"),
    ]


#: From the summary to the "not ours" end: change the service to children's social care
#: (Ofsted's), then choose to end.
SUMMARY_TO_END = [
    ("choice", "edit"),
    ("choice", "service_type"),
    ("choice", "childrens_social_care"),
    ("choice", "end"),
]


def _text(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _search(connection: Connection, marker: str, skip: frozenset[str]) -> list[str]:
    names = set(inspect(connection).get_table_names())
    missing = set(metadata.tables) - names
    assert not missing, f"tables of the models missing from the database: {missing}"
    reflected = MetaData()
    found: list[str] = []
    needle = marker.lower()
    for name in sorted(names - skip):
        with warnings.catch_warnings():
            # SQLite cannot reflect an expression index (the staff queue's); columns are enough.
            warnings.filterwarnings("ignore", "Skipped unsupported reflection", SAWarning)
            table = Table(name, reflected, autoload_with=connection)
        for row in connection.execute(select(table)).mappings():
            for column, value in row.items():
                if value is not None and needle in _text(value).lower():
                    found.append(f"{name}.{column}")
    return sorted(set(found))


async def tables_holding(
    engine: AsyncEngine, marker: str, *, skip: frozenset[str] = frozenset()
) -> list[str]:
    """Every `table.column` of the database, in any row, whose value contains `marker`
    (case-insensitively; JSON as its text). `skip`: tables not searched (e.g. `reports`, where
    a submitted report is kept on purpose)."""
    async with engine.connect() as connection:
        return await connection.run_sync(_search, marker, skip)
