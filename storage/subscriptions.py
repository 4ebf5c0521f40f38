"""Inspection-report alert subscriptions (double opt-in), apart from the reports."""

from __future__ import annotations

import builtins
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, or_, select, update

from bot.ports import AlertSubscription, InspectionNews
from storage.db import Db
from storage.directory import _location
from storage.models import alert_subscriptions, directory_locations

PENDING, CONFIRMED = "pending", "confirmed"


def _subscription(row: Any) -> AlertSubscription:
    return AlertSubscription(
        id=row.id,
        email=row.email,
        location_id=row.location_id,
        locale=row.locale,
        token=row.token,
        status=row.status,
        created_at=row.created_at,
        last_checked_seen=row.last_checked_seen,
    )


class SqlSubscriptions:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add_pending(
        self,
        *,
        email: str,
        location_id: str,
        locale: str,
        token: str,
        last_checked_seen: date | None,
        now: datetime,
    ) -> AlertSubscription | None:
        statement = self._db.insert_or_ignore(alert_subscriptions).values(
            email=email,
            location_id=location_id,
            locale=locale,
            token=token,
            status=PENDING,
            created_at=now,
            last_checked_seen=last_checked_seen,
        )
        if (await self._db.execute(statement)).rowcount == 0:
            return None
        return await self.get(token)

    async def get(self, token: str) -> AlertSubscription | None:
        statement = select(alert_subscriptions).where(alert_subscriptions.c.token == token)
        row = (await self._db.execute(statement)).first()
        return None if row is None else _subscription(row)

    async def confirm(self, token: str, *, now: datetime) -> AlertSubscription | None:
        await self._db.execute(
            update(alert_subscriptions)
            .where(alert_subscriptions.c.token == token, alert_subscriptions.c.status == PENDING)
            .values(status=CONFIRMED, confirmed_at=now)
        )
        return await self.get(token)

    async def remove(self, token: str) -> AlertSubscription | None:
        found = await self.get(token)
        if found is not None:
            await self._db.execute(
                delete(alert_subscriptions).where(alert_subscriptions.c.id == found.id)
            )
        return found

    async def newer_inspections(self, *, limit: int = 1000) -> builtins.list[InspectionNews]:
        subscription, location = alert_subscriptions, directory_locations
        statement = (
            select(subscription, *[c.label(f"loc_{c.name}") for c in location.c])
            .join(location, location.c.location_id == subscription.c.location_id)
            .where(
                subscription.c.status == CONFIRMED,
                location.c.last_checked.is_not(None),
                or_(
                    subscription.c.last_checked_seen.is_(None),
                    location.c.last_checked > subscription.c.last_checked_seen,
                ),
            )
            .order_by(subscription.c.id)
            .limit(limit)
            .with_for_update(of=subscription, skip_locked=True)
        )
        found = []
        for row in await self._db.execute(statement):
            mapping = row._mapping
            located = {c.name: mapping[f"loc_{c.name}"] for c in location.c}
            found.append(InspectionNews(_subscription(row), _location(_Row(located))))
        return found

    async def mark_told(self, subscription_id: int, last_checked: date) -> None:
        await self._db.execute(
            update(alert_subscriptions)
            .where(alert_subscriptions.c.id == subscription_id)
            .values(last_checked_seen=last_checked)
        )

    async def drop_unconfirmed(self, before: datetime) -> int:
        result = await self._db.execute(
            delete(alert_subscriptions).where(
                alert_subscriptions.c.status == PENDING, alert_subscriptions.c.created_at < before
            )
        )
        return int(result.rowcount)


class _Row:
    """Attribute access over a dict, as `_location` reads rows."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
