"""A TCP proxy on loopback between a worker and PostgreSQL, that a test can cut and restore.

Cutting aborts every proxied connection (both sides see a reset) and stops listening, so new
connections are refused: to the worker, the database has gone away; to everyone else, the
server is still there. `arm_commit_cut` cuts at the most awkward moment of a turn, its COMMIT:
either before the COMMIT reaches the server (the turn is rolled back) or just after it (the
turn is committed, but the worker never hears so).

Freezing is the nastier failure: the network hangs instead of failing. Every connection stays
open, new ones are accepted, but no byte moves either way until `thaw()` (then what was held
is delivered, as TCP would once the network is back). `arm_commit_freeze` freezes at the next
COMMIT, so the worker is stuck mid-turn holding its conversation's row lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Literal

CommitCut = Literal["before", "after", "freeze"]


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    #: Server-to-client bytes are dropped (the COMMIT's answer must not reach the worker).
    muted: bool = False

    def abort(self) -> None:
        for writer in (self.client, self.server):
            with contextlib.suppress(Exception):
                writer.transport.abort()


@dataclass
class CuttableProxy:
    upstream_host: str
    upstream_port: int
    port: int = 0
    links: set[_Link] = field(default_factory=set)
    commits_seen: int = 0
    _server: asyncio.Server | None = None
    _arm: CommitCut | None = None
    _cut_done: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _flowing: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._flowing.set()

    @property
    def is_frozen(self) -> bool:
        return not self._flowing.is_set()

    def freeze(self) -> None:
        """The network hangs: nothing moves, nothing fails."""
        self._flowing.clear()
        self._cut_done.set()

    def thaw(self) -> None:
        self._cut_done.clear()
        self._flowing.set()

    def arm_commit_freeze(self) -> None:
        """Freeze just before the next COMMIT reaches the server (the turn's locks are held)."""
        self._cut_done.clear()
        self._arm = "freeze"

    @property
    def is_cut(self) -> bool:
        return self._server is None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """The database goes away: every connection reset, new ones refused."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for link in list(self.links):
            link.abort()
        self.links.clear()
        self._cut_done.set()

    async def restore(self) -> None:
        """The database is back, on the same address."""
        self._cut_done.clear()
        self._arm = None
        await self.start()

    def arm_commit_cut(self, when: CommitCut) -> None:
        """Cut at the next COMMIT any worker connection sends."""
        self._cut_done.clear()
        self._arm = when

    async def wait_cut(self, within: float = 10) -> None:
        await asyncio.wait_for(self._cut_done.wait(), within)

    async def close(self) -> None:
        self._flowing.set()
        await self.cut()
        for task in list(self._tasks):
            task.cancel()

    # ------------------------------------------------------------------ plumbing

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self.links.add(link)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, link, to_server=True),
                self._pipe(up_reader, writer, link, to_server=False),
            )
        finally:
            self.links.discard(link)
            link.abort()

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        target: asyncio.StreamWriter,
        link: _Link,
        *,
        to_server: bool,
    ) -> None:
        try:
            while data := await source.read(65536):
                if to_server and _is_commit(data) and self._arm == "freeze":
                    self._arm = None
                    self.freeze()
                await self._flowing.wait()
                if to_server and _is_commit(data):
                    self.commits_seen += 1
                    if self._arm == "before":
                        self._arm = None
                        await self.cut()
                        return
                    if self._arm == "after":
                        self._arm = None
                        link.muted = True
                        target.write(data)
                        await target.drain()
                        self._spawn(self._cut_after(0.5))
                        continue
                if not to_server and link.muted:
                    continue
                target.write(data)
                await target.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            link.abort()

    async def _cut_after(self, delay: float) -> None:
        await asyncio.sleep(delay)  # the server has long committed by then
        await self.cut()

    def _spawn(self, coroutine: object) -> None:
        task = asyncio.ensure_future(coroutine)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _is_commit(data: bytes) -> bool:
    """A simple-protocol Query message whose text is COMMIT (how asyncpg ends a transaction)."""
    return data[:1] == b"Q" and b"COMMIT" in data[5:16].upper()
