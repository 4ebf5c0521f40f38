"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from bot import jsonenc

#: SQLAlchemy's SQLite DATETIME storage format (`sqlalchemy.dialects.sqlite.DATETIME`).
_SQLITE_DATETIME = (
    "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"
)


def as_utc(moment: datetime) -> datetime:
    """As `UTCDateTime` binds a time on PostgreSQL: aware UTC, a naive one taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def sqlite_time(moment: datetime) -> str:
    """As `UTCDateTime` then SQLAlchemy's SQLite DATETIME store it: naive UTC text. For the
    statements run on the driver's connection (storage.turns, storage.outbox,
    storage.chat_messages), which store what SQLAlchemy's statements stored."""
    at = as_utc(moment)
    return _SQLITE_DATETIME % {
        "year": at.year,
        "month": at.month,
        "day": at.day,
        "hour": at.hour,
        "minute": at.minute,
        "second": at.second,
        "microsecond": at.microsecond,
    }


def from_sqlite_time(value: str | datetime) -> datetime:
    """A time read back from SQLite as `sqlite_time` stored it: aware UTC."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return as_utc(moment)


def json_text(value: Any) -> str:
    """JSON text for a jsonb parameter or a SQLite JSON column, by `bot.jsonenc` (orjson):
    compact, non-ASCII as it is. Any decoder reads back the same value as from `json.dumps`."""
    return jsonenc.dumps(value).decode()


#: JSON everywhere, JSONB on PostgreSQL (indexable, compact, no duplicate keys).
JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes in and out, on every backend.

    SQLite has no time zones: values are stored as naive UTC text, so that comparisons in SQL
    (`available_at <= :now`) stay correct as plain string order, and are made aware again on
    the way out. A naive value coming in is taken to be UTC rather than refused, because a
    crashed turn is worse than a well-defined assumption.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # defensive: a row written by hand in the sqlite shell
            value = datetime.fromisoformat(value)
        moment: datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
