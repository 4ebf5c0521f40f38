"""The regulator's directory of locations, replaced wholesale by each import (~50k rows).

An import compares the file with the table in memory and writes only the difference, in
executemany batches; the work is one transaction, so readers see the old or the new
directory, never half of each. `directory_meta.version` changes only when rows changed, so
workers reload their in-memory index only when there is something new.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.ports import DirectoryImportResult, DirectoryLocation
from storage.db import Clock, Db, on_live_connection
from storage.errors import storage_errors
from storage.models import directory_locations, directory_meta

BATCH_SIZE = 1000
_META_ID = 1
_FIELDS = tuple(
    column.name for column in directory_locations.columns if column.name != "location_id"
)


def _row(location: DirectoryLocation) -> dict[str, Any]:
    return {
        "location_id": location.location_id,
        "name": location.name,
        "also_known_as": location.also_known_as,
        "address": location.address,
        "postcode": location.postcode,
        "phone": location.phone,
        "website": location.website,
        "service_types": list(location.service_types),
        "specialisms": list(location.specialisms),
        "provider_name": location.provider_name,
        "provider_id": location.provider_id,
        "local_authority": location.local_authority,
        "region": location.region,
        "url": location.url,
        "last_checked": location.last_checked,
    }


def _location(row: Any) -> DirectoryLocation:
    last_checked = row.last_checked
    if isinstance(last_checked, str):  # defensive: SQLite text written by other tools
        last_checked = date.fromisoformat(last_checked)
    return DirectoryLocation(
        location_id=row.location_id,
        name=row.name,
        also_known_as=row.also_known_as,
        address=row.address,
        postcode=row.postcode,
        phone=row.phone,
        website=row.website,
        service_types=tuple(row.service_types or ()),
        specialisms=tuple(row.specialisms or ()),
        provider_name=row.provider_name,
        provider_id=row.provider_id,
        local_authority=row.local_authority,
        region=row.region,
        url=row.url,
        last_checked=last_checked,
    )


def _batches(items: Sequence[Any], size: int = BATCH_SIZE) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SqlDirectory:
    """Each call is its own transaction on its own pooled connection."""

    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    async def replace_all(
        self, locations: Sequence[DirectoryLocation], *, produced_on: str | None = None
    ) -> DirectoryImportResult:
        incoming: dict[str, DirectoryLocation] = {}
        for location in locations:
            incoming[location.location_id] = location  # a repeated id: the last one wins
        with storage_errors():
            async with self._engine.begin() as connection:
                db = Db(connection, self._clock)
                meta = await self._lock_meta(db)
                existing = {
                    location.location_id: location
                    for location in map(_location, await db.execute(select(directory_locations)))
                }
                added = [_row(loc) for key, loc in incoming.items() if key not in existing]
                changed = [
                    _row(loc)
                    for key, loc in incoming.items()
                    if key in existing and existing[key] != loc
                ]
                removed = [key for key in existing if key not in incoming]
                for batch in _batches(added):
                    await db.execute(directory_locations.insert(), list(batch))
                update_statement = update(directory_locations).where(
                    directory_locations.c.location_id == bindparam("_location_id")
                )
                for batch in _batches(changed):
                    params = [
                        {"_location_id": row["location_id"], **{f: row[f] for f in _FIELDS}}
                        for row in batch
                    ]
                    await db.execute(update_statement, params)
                for batch in _batches(removed):
                    await db.execute(
                        delete(directory_locations).where(
                            directory_locations.c.location_id.in_(batch)
                        )
                    )
                version = meta
                if added or changed or removed or not meta:
                    version = uuid.uuid4().hex
                await db.execute(
                    update(directory_meta)
                    .where(directory_meta.c.id == _META_ID)
                    .values(version=version, produced_on=produced_on, imported_at=db.now())
                )
        return DirectoryImportResult(
            added=len(added),
            updated=len(changed),
            removed=len(removed),
            total=len(incoming),
            produced_on=produced_on,
        )

    async def _lock_meta(self, db: Db) -> str:
        """Create the meta row if missing and lock it, so two imports run one after the other."""
        await db.execute(
            db.insert_or_ignore(directory_meta).values(
                id=_META_ID, version="", produced_on=None, imported_at=db.now()
            )
        )
        statement = (
            select(directory_meta.c.version)
            .where(directory_meta.c.id == _META_ID)
            .with_for_update()
        )
        return str((await db.execute(statement)).scalar_one())

    async def all(self) -> list[DirectoryLocation]:
        statement = select(directory_locations).order_by(directory_locations.c.location_id)

        async def read(connection: AsyncConnection) -> list[DirectoryLocation]:
            return [_location(row) for row in await connection.execute(statement)]

        return await on_live_connection(self._engine, read)

    async def get(self, location_id: str) -> DirectoryLocation | None:
        statement = select(directory_locations).where(
            directory_locations.c.location_id == location_id
        )

        async def read(connection: AsyncConnection) -> Any:
            return (await connection.execute(statement)).first()

        row = await on_live_connection(self._engine, read)
        return None if row is None else _location(row)

    async def version(self) -> str:
        """The empty string until the first import."""
        statement = select(directory_meta.c.version).where(directory_meta.c.id == _META_ID)

        async def read(connection: AsyncConnection) -> Any:
            return (await connection.execute(statement)).scalar_one_or_none()

        version = await on_live_connection(self._engine, read)
        return version or ""
