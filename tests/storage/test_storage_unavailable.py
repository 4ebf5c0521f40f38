"""A database that is down surfaces as StorageError (503), and is used again once it is back."""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bot.ports import StorageError
from storage import create_storage, upgrade


def _unreachable_sqlite(tmp_path: Path) -> str:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the database directory should be")
    return f"sqlite+aiosqlite:///{blocker / 'intake.db'}"


UNREACHABLE = [
    pytest.param("sqlite", id="sqlite"),
    # Nothing listens on port 1: the connection is refused at once.
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    # A server at max_connections: it answers the startup with FATAL 53300.
    pytest.param("postgres_full", id="postgres-full"),
]

_SSL_OR_GSS_REQUESTS = (80877103, 80877104)


async def _serve_too_many_clients() -> asyncio.Server:
    """A loopback stand-in for PostgreSQL with every connection slot taken: it refuses SSL,
    reads the startup message and answers as the server does, "sorry, too many clients
    already" (SQLSTATE 53300). asyncpg raises TooManyConnectionsError; through SQLAlchemy's
    pool it arrives wrapped in SQLAlchemy's emulated DBAPI error."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!i", await reader.readexactly(4))
                body = await reader.readexactly(length - 4)
                if struct.unpack("!i", body[:4])[0] not in _SSL_OR_GSS_REQUESTS:
                    break  # the startup message
                writer.write(b"N")
            fields = b"".join(
                kind + text + b"\0"
                for kind, text in (
                    (b"S", b"FATAL"),
                    (b"V", b"FATAL"),
                    (b"C", b"53300"),
                    (b"M", b"sorry, too many clients already"),
                )
            )
            writer.write(b"E" + struct.pack("!i", 4 + len(fields) + 1) + fields + b"\0")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(refuse, "127.0.0.1", 0)


async def _settle_aiosqlite_threads(within_seconds: float = 2.0) -> None:
    """Wait for aiosqlite's worker threads of failed connects to finish.

    After a failed connect aiosqlite stops its thread without awaiting it; if the test's event
    loop closes first, the thread's final callback raises "Event loop is closed" (harmless in
    a long-lived server, but an unhandled-thread-exception warning, i.e. an error, here).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_seconds
    # Polling: a thread's end offers nothing to await.
    while loop.time() < deadline and any(  # noqa: ASYNC110
        "_connection_worker_thread" in thread.name for thread in threading.enumerate()
    ):
        await asyncio.sleep(0.01)


@pytest.fixture(params=UNREACHABLE)
async def unreachable_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield _unreachable_sqlite(tmp_path)
        await _settle_aiosqlite_threads()
    elif request.param == "postgres_full":
        server = await _serve_too_many_clients()
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test"
        finally:
            server.close()
            await server.wait_closed()
    else:
        yield "postgresql+asyncpg://postgres@127.0.0.1:1/test"


async def test_ping_raises_storage_error(unreachable_url: str) -> None:
    storage = await create_storage(unreachable_url)
    try:
        with pytest.raises(StorageError):
            await storage.ping()
    finally:
        await storage.close()


async def test_unit_of_work_raises_storage_error(unreachable_url: str) -> None:
    storage = await create_storage(unreachable_url)
    try:
        with pytest.raises(StorageError):
            async with storage.unit_of_work() as uow:
                await uow.conversations.get("c1")
        with pytest.raises(StorageError):
            await storage.directory.version()
    finally:
        await storage.close()


async def test_upgrade_raises_storage_error(unreachable_url: str) -> None:
    with pytest.raises(StorageError):
        await upgrade(unreachable_url)


async def test_missing_tables_raise_storage_error(tmp_path: Path) -> None:
    """A database that was never migrated is unusable, not a crash of the service."""
    storage = await create_storage(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        await storage.ping()
        with pytest.raises(StorageError):
            async with storage.unit_of_work() as uow:
                await uow.conversations.get("c1")
    finally:
        await storage.close()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_sessions_killed_mid_flight_then_recover(
    database_url: str, terminate_sessions: Callable[[str], Awaitable[int]]
) -> None:
    name = f"intake-recovery-{id(database_url)}"
    url = f"{database_url}&application_name={name}"
    await upgrade(url)
    storage = await create_storage(url)
    try:
        await storage.ping()
        # The server drops an idle pooled connection: it is replaced unnoticed, whether the
        # next user is a ping, a unit of work or a directory read.
        assert await terminate_sessions(name) >= 1
        await storage.ping()
        assert await terminate_sessions(name) >= 1
        async with storage.unit_of_work() as uow:
            assert await uow.conversations.get("c1") is None
            await uow.inbound.put("s", "m", {"kept": True})
            await uow.commit()
        assert await terminate_sessions(name) >= 1
        assert await storage.directory.version() == ""
        async with storage.unit_of_work() as uow:
            assert await uow.inbound.get("s", "m") == {"kept": True}
        # The server drops the connection in the middle of a unit of work: that turn fails
        # with StorageError, the next one works on a fresh connection.
        with pytest.raises(StorageError):
            async with storage.unit_of_work() as uow:
                await uow.conversations.get("c1")
                await terminate_sessions(name)
                await uow.conversations.get("c1")
        async with storage.unit_of_work() as uow:
            assert await uow.conversations.get("c1") is None
    finally:
        await storage.close()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_turn_on_the_driver_connection_recovers_from_a_dropped_session(
    database_url: str, terminate_sessions: Callable[[str], Awaitable[int]]
) -> None:
    """The turn's read and write run on asyncpg's own connection (storage.turns): a pooled
    connection the server dropped while idle is replaced there too, and a drop in the middle
    of the turn is a StorageError that leaves nothing half-written."""
    from datetime import UTC, datetime

    from bot.engine.types import ConversationState
    from bot.ports import ConversationRecord, TranscriptEntry

    name = f"intake-turn-recovery-{id(database_url)}"
    url = f"{database_url}&application_name={name}"
    await upgrade(url)
    storage = await create_storage(url)
    now = datetime.now(UTC)
    try:
        async with storage.unit_of_work() as uow:
            record = ConversationRecord("c1", "web", ConversationState("welcome"), now, now)
            await uow.conversations.add(record)
            await uow.commit()

        async def hold_a_connection(release: asyncio.Event) -> None:
            async with storage.unit_of_work() as uow:
                await uow.conversations.get("c1")
                await release.wait()

        # Three pooled connections, then a server restart as far as they know: all dead.
        release = asyncio.Event()
        holders = [asyncio.create_task(hold_a_connection(release)) for _ in range(3)]
        await asyncio.sleep(0.3)
        release.set()
        await asyncio.gather(*holders)
        assert await terminate_sessions(name) >= 3
        async with storage.unit_of_work() as uow:  # the first statement is the driver's BEGIN
            loaded, prior = await uow.conversations.get_for_turn("c1", scope="c1", message_id="m1")
            assert loaded is not None and prior is None
            line = TranscriptEntry(loaded.transcript_seq, "user", {"text": "hi"}, now)
            loaded.transcript_seq += 1
            await uow.save_turn(loaded, [line], scope="c1", message_id="m1", reply={"r": 1})
            await uow.commit()
        with pytest.raises(StorageError):
            async with storage.unit_of_work() as uow:
                loaded, _ = await uow.conversations.get_for_turn("c1", scope="c1", message_id="m2")
                assert loaded is not None
                await terminate_sessions(name)
                await uow.save_turn(loaded, [], scope="c1", message_id="m2", reply={"r": 2})
        async with storage.unit_of_work() as uow:
            loaded, prior = await uow.conversations.get_for_turn("c1", scope="c1", message_id="m1")
            _, not_kept = await uow.conversations.get_for_turn("c1", scope="c1", message_id="m2")
            lines = await uow.transcripts.list("c1")
        assert loaded is not None and loaded.revision == 1 and loaded.transcript_seq == 2
        assert prior == {"r": 1} and not_kept is None
        assert [(e.seq, e.role, e.payload) for e in lines] == [(1, "user", {"text": "hi"})]
    finally:
        await storage.close()
