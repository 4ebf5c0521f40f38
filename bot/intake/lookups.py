"""The provider directory as the service sees it: an in-memory fuzzy index, rebuilt when the
stored directory changes (another worker may have imported a new monthly file)."""

from __future__ import annotations

import asyncio
import logging
import time

from bot.directory import DirectoryIndex, describe
from bot.ports import DirectoryLocation, DirectoryRepository

log = logging.getLogger(__name__)

#: (location id, name, label for a button)
MatchTuple = tuple[str, str, str]


class DirectoryLookup:
    def __init__(
        self, repository: DirectoryRepository, *, check_every_seconds: float = 60.0
    ) -> None:
        self._repository = repository
        self._index = DirectoryIndex.build([])
        self._by_id: dict[str, DirectoryLocation] = {}
        self._version: str | None = None
        self._checked_at = 0.0
        self._check_every = check_every_seconds
        self._lock = asyncio.Lock()

    async def refresh(self, *, force: bool = False) -> None:
        """Reload when the stored directory changed. Call it OUTSIDE a unit of work: on SQLite
        there is one connection, and the turn's transaction holds it.

        Once a minute the first turn to call it reads the stored version, on a connection
        it waits for in line behind the turns queued for one. The turns that call it meanwhile
        go on with the index they have; they used to wait for that read on the lock, so under
        load every turn in flight waited once a minute for a read that waited for all of
        them. Only before the first load is there nothing to go on with."""
        now = time.monotonic()
        if not force and now - self._checked_at < self._check_every:
            return
        if not force and self._lock.locked() and self._version is not None:
            return
        async with self._lock:
            if not force and time.monotonic() - self._checked_at < self._check_every:
                return
            version = await self._repository.version()
            if force or version != self._version:
                locations = await self._repository.all()
                # Building the index is CPU work; keep the event loop answering meanwhile.
                self._index = await asyncio.to_thread(DirectoryIndex.build, locations)
                self._by_id = {loc.location_id: loc for loc in locations}
                self._version = version
                log.info("directory index loaded: %d locations", len(locations))
            self._checked_at = time.monotonic()

    def search(self, query: str, service_type: str | None, limit: int = 3) -> list[MatchTuple]:
        matches = self._index.search(query, service_type=service_type, limit=limit)
        return [_as_tuple(m.location) for m in matches]

    def get(self, location_id: str) -> MatchTuple | None:
        """A location by id from memory (deep links), without touching the database."""
        location = self._by_id.get(location_id)
        return _as_tuple(location) if location else None


def _as_tuple(location: DirectoryLocation) -> MatchTuple:
    return (location.location_id, location.name, describe(location))
