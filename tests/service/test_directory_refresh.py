"""The directory index's minutely check (`bot.intake.lookups.DirectoryLookup.refresh`): the
turn that makes it reads the stored version; the turns meanwhile go on with the index they
have instead of queueing on the check's lock (under load, that read itself waits in line
for a connection behind the turns). Before the first load there is no index to go on with:
they wait."""

from __future__ import annotations

import asyncio

from bot.intake.lookups import DirectoryLookup
from bot.ports import DirectoryLocation


class _SlowVersion:
    """A stored directory whose version read waits until released."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()
        self.release = asyncio.Event()
        self.version_reads = 0

    async def version(self) -> str:
        self.version_reads += 1
        self.reading.set()
        await self.release.wait()
        return "2026-11"

    async def all(self) -> list[DirectoryLocation]:
        return []


async def test_a_turn_goes_on_while_another_checks_the_directory() -> None:
    stored = _SlowVersion()
    lookup = DirectoryLookup(stored, check_every_seconds=0.0)  # type: ignore[arg-type]
    stored.release.set()
    await lookup.refresh()  # the first load
    stored.release.clear()
    stored.reading.clear()
    checking = asyncio.create_task(lookup.refresh())
    async with asyncio.timeout(10):
        await stored.reading.wait()  # the check is reading the version, holding the lock
    async with asyncio.timeout(1):
        await lookup.refresh()  # another turn: does not wait for it
    assert not checking.done()
    assert stored.version_reads == 2
    stored.release.set()
    async with asyncio.timeout(10):
        await checking


async def test_before_the_first_load_a_turn_waits_for_it() -> None:
    stored = _SlowVersion()
    lookup = DirectoryLookup(stored)  # type: ignore[arg-type]
    first = asyncio.create_task(lookup.refresh())
    async with asyncio.timeout(10):
        await stored.reading.wait()
    second = asyncio.create_task(lookup.refresh())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not second.done()
    stored.release.set()
    async with asyncio.timeout(10):
        await asyncio.gather(first, second)
    assert stored.version_reads == 1  # the second found the check done when it had the lock
