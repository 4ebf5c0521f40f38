"""A TCP proxy on loopback between a worker and PostgreSQL, that a test can cut and restore.

Cutting aborts every proxied connection (both sides see a reset) and stops listening, so new
connections are refused: to the worker, the database has gone away; to everyone else, the
server is still there. `arm_commit_cut` cuts at the most awkward moment of a turn, its commit
point (COMMIT, or the turn's single autocommit write): either before it reaches the server
(the turn is rolled back) or just after it (the turn is committed, but the worker never hears
so).

The commit point is found in the client's stream, read message by message (a message may span
TCP chunks, a chunk may hold several): a simple-protocol Query whose text is COMMIT (how
asyncpg ends a transaction), or the execution of a statement that commits by itself, run
outside a transaction (storage.turns' writes that open with `COMMIT_POINT_MARK`): asyncpg
prepares it once per connection (Parse, with its text) and runs it by name (Bind, Execute,
Sync), so the proxy keeps, per connection, the names of the statements prepared with the mark,
and a Bind of one of them is the commit point.

Only a turn's commit point takes an armed cut: a commit point whose work wrote transcript lines
(`TURN_WRITE`). The worker commits other things on its own schedule (the outbox dispatcher's
claims and settlements are marked autocommit writes too); had one of them taken the cut, the
turn would have gone through untouched, and the test would have checked nothing.

Freezing is the nastier failure: the network hangs instead of failing. Every connection stays
open, new ones are accepted, but no byte moves either way until `thaw()` (then what was held
is delivered, as TCP would once the network is back). `arm_commit_freeze` freezes at the next
commit point, so the worker is stuck mid-turn: holding its conversation's row lock at a
COMMIT; at an autocommit write, with that write held in the network, to reach the server
late. `wait_held_commit_answered` waits until the server has answered a commit point held so.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

from storage.turns import COMMIT_POINT_MARK

_MARK = COMMIT_POINT_MARK.encode()

CommitCut = Literal["before", "after", "freeze"]
CommitPoint = Literal["COMMIT", "write"]
#: What every turn writes, in the one statement that commits it or in the transaction that
#: COMMIT ends, and no other committing work of the worker does.
TURN_WRITE = b"INSERT INTO TRANSCRIPT_ENTRIES"


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    #: Server-to-client bytes are dropped (the commit's answer must not reach the worker).
    muted: bool = False
    #: A commit point held by a freeze was delivered late; its answer is awaited.
    held_commit: bool = False
    stream: _ClientStream = field(default_factory=lambda: _ClientStream())
    #: Names of the prepared statements (extended protocol) whose text is a write that
    #: commits by itself (`COMMIT_POINT_MARK`): a Bind of one of them is a commit point.
    committing_statements: set[bytes] = field(default_factory=set)
    #: Names of the prepared statements that write a turn's transcript lines (`TURN_WRITE`).
    turn_statements: set[bytes] = field(default_factory=set)
    #: Whether the transaction open on this connection has run a turn's write, so that its
    #: COMMIT is the turn's commit point.
    turn_in_transaction: bool = False

    def commit_point(self, message: bytes) -> CommitPoint | None:
        """Whether `message` is a turn's commit point: "COMMIT" of a transaction that ran a
        turn's write, or "write", the execution of a turn's write that is its own commit.
        asyncpg prepares a statement once per connection (Parse: name, text) and then runs it
        by name (Bind: portal, name; then Execute and Sync): the Bind is the commit point, as
        the server runs and commits what follows it."""
        kind = message[:1]
        if kind == b"P":
            name, end = _cstring(message, 5)
            query, _ = _cstring(message, end)
            _track(self.committing_statements, name, _MARK in query)
            _track(self.turn_statements, name, TURN_WRITE in query.upper())
            return None
        if kind == b"B":
            _portal, end = _cstring(message, 5)
            name, _ = _cstring(message, end)
            if name not in self.turn_statements:
                return None
            if name in self.committing_statements:
                return "write"
            self.turn_in_transaction = True
            return None
        if kind != b"Q":
            return None
        text = _query_text(message)
        if TURN_WRITE in text:
            self.turn_in_transaction = True
        committed = text.startswith(b"COMMIT")
        if committed or text.startswith(b"ROLLBACK"):
            was_turn, self.turn_in_transaction = self.turn_in_transaction, False
            return "COMMIT" if was_turn and committed else None
        return None

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
    #: What each armed cut or freeze fell on, in order ("COMMIT" or "write").
    armed_commit_points: list[CommitPoint] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _arm: CommitCut | None = None
    _cut_done: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _flowing: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set once the server answered a commit point that a freeze held and the thaw delivered.
    _held_commit_answered: asyncio.Event = field(default_factory=asyncio.Event)

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
        """Freeze just before the next turn's commit point (COMMIT, or the turn's single
        autocommit write) reaches the server; it is delivered at `thaw()`."""
        self._cut_done.clear()
        self._held_commit_answered.clear()
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
        """Cut at the next turn's commit point (COMMIT, or the turn's single autocommit
        write), whichever worker connection sends it."""
        self._cut_done.clear()
        self._arm = when

    async def wait_cut(self, within: float = 10) -> None:
        await asyncio.wait_for(self._cut_done.wait(), within)

    async def wait_held_commit_answered(self, within: float = 10) -> None:
        """Until the server has answered the commit point a freeze held (after `thaw()`)."""
        await asyncio.wait_for(self._held_commit_answered.wait(), within)

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
                if to_server:
                    if not await self._to_server(data, target, link):
                        return
                    continue
                await self._flowing.wait()
                if link.muted:
                    continue
                if link.held_commit:
                    link.held_commit = False
                    self._held_commit_answered.set()
                target.write(data)
                await target.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if to_server and link.held_commit and not link.server.is_closing():
                # A commit point held by a freeze was delivered late: let the server answer
                # it (the test checks it changed nothing) before the connection goes.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._held_commit_answered.wait(), 10)
            link.abort()

    async def _to_server(self, data: bytes, target: asyncio.StreamWriter, link: _Link) -> bool:
        """Forward client bytes message by message, acting on the armed cut at the first
        commit point; False once the link is cut."""
        messages = link.stream.feed(data)
        for index, message in enumerate(messages):
            point = link.commit_point(message)
            if point is None:
                continue
            self.commits_seen += 1
            arm, self._arm = self._arm, None
            if arm is None:
                continue
            self.armed_commit_points.append(point)
            await self._send(target, messages[:index])
            rest = messages[index:]
            if arm == "before":
                await self.cut()
                return False
            if arm == "after":
                link.muted = True
                await self._send(target, rest)
                self._spawn(self._cut_after(0.5))
                return True
            self.freeze()
            await self._flowing.wait()
            link.held_commit = True  # its answer, once thawed, is the next the server sends
            await self._send(target, rest)
            return True
        await self._send(target, messages)
        return True

    async def _send(self, target: asyncio.StreamWriter, messages: list[bytes]) -> None:
        await self._flowing.wait()
        if messages:
            target.write(b"".join(messages))
            await target.drain()

    async def _cut_after(self, delay: float) -> None:
        await asyncio.sleep(delay)  # the server has long committed by then
        await self.cut()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


#: What the client sends before its StartupMessage, each without a type byte: the request
#: codes of SSLRequest, GSSENCRequest and CancelRequest (a cancel connection sends nothing else).
_PRE_STARTUP_CODES = {80877103, 80877104, 80877102}


@dataclass
class _ClientStream:
    """The client-to-server byte stream cut into whole protocol messages, whatever the TCP
    chunks: a message may span chunks and a chunk may hold several. Before the StartupMessage
    a message is an int32 length and its body; after it, a type byte, then the length."""

    _buffer: bytearray = field(default_factory=bytearray)
    _started: bool = False
    #: Bytes this proxy cannot read as messages (a TLS session): passed on as they come.
    _opaque: bool = False

    def feed(self, data: bytes) -> list[bytes]:
        if self._opaque:
            return [data]
        self._buffer += data
        messages: list[bytes] = []
        while self._buffer:
            if not self._started and self._buffer[0] != 0:
                # Not a length: the server said yes to SSLRequest and this is TLS.
                self._opaque = True
            header = 4 if not self._started else 5
            if self._opaque or len(self._buffer) < header:
                break
            length = int.from_bytes(self._buffer[header - 4 : header], "big")
            if length < 4:  # not the protocol as read here
                self._opaque = True
                break
            size = header - 4 + length
            if len(self._buffer) < size:
                break
            message = bytes(self._buffer[:size])
            del self._buffer[:size]
            if not self._started:
                self._started = int.from_bytes(message[4:8], "big") not in _PRE_STARTUP_CODES
            messages.append(message)
        if self._opaque and self._buffer:
            messages.append(bytes(self._buffer))
            self._buffer.clear()
        return messages


def _track(names: set[bytes], name: bytes, member: bool) -> None:
    """A prepared statement's name, (re)defined by a Parse, in or out of `names`."""
    if member:
        names.add(name)
    else:
        names.discard(name)


def _cstring(body: bytes, start: int) -> tuple[bytes, int]:
    end = body.index(b"\0", start)
    return body[start:end], end + 1


def _query_text(message: bytes) -> bytes:
    """A simple-protocol Query's text (after its type byte and length), upper-cased."""
    return message[5:].lstrip().upper()
