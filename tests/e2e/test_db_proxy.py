"""The outage and freeze tests' proxy finds a turn's commit point in either form: COMMIT of a
transaction that wrote transcript lines, or the execution of such a write that commits by
itself (prepared once per connection, run by name); and no other commit of the worker's (the
outbox dispatcher's claims are autocommit writes too).

A cut that fell elsewhere would make those tests check nothing, so the proxy's reading of the
client's stream is checked here: whatever the TCP chunks, and against real PostgreSQL through
asyncpg, as the workers reach it.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from storage.turns import COMMIT_POINT_MARK
from tests.e2e.multiworker_proxy import (
    CommitCut,
    CommitPoint,
    CuttableProxy,
    _ClientStream,
    _Link,
)
from tests.e2e.multiworker_support import admin_connection, fresh_database


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + (len(body) + 4).to_bytes(4, "big") + body


def _untyped(body: bytes) -> bytes:
    return (len(body) + 4).to_bytes(4, "big") + body


TURN = b"INSERT INTO transcript_entries (x) VALUES ($1)"
MARKED_TURN = COMMIT_POINT_MARK.encode() + TURN
#: Committing by itself too, as the outbox dispatcher's claims do, but not a turn.
MARKED_OTHER = f"{COMMIT_POINT_MARK} UPDATE t SET x = $1".encode()


def _bind(name: bytes) -> list[bytes]:
    return [
        _message(b"B", b"\0" + name + b"\0\0\0\0\0\0\0"),
        _message(b"E", b"\0\0\0\0\0"),
        _message(b"S", b""),
    ]


SESSION = [
    _untyped((80877103).to_bytes(4, "big")),  # SSLRequest (the server said no)
    _untyped((196608).to_bytes(4, "big") + b"user\0postgres\0database\0test\0\0"),
    _message(b"P", b"s1\0" + MARKED_TURN + b"\0\0\0"),
    _message(b"D", b"Ss1\0"),
    _message(b"S", b""),
    _message(b"P", b"s2\0SELECT 1\0\0\0"),
    *_bind(b"s2"),
    *_bind(b"s1"),  # 9: the commit point of the turn's autocommit write
    _message(b"P", b"s3\0" + MARKED_OTHER + b"\0\0\0"),
    *_bind(b"s3"),  # an autocommit write, not a turn's
    _message(b"Q", b"BEGIN\0"),
    _message(b"P", b"s4\0" + TURN + b"\0\0\0"),
    *_bind(b"s4"),
    _message(b"Q", b"COMMIT;\0"),  # 21: the commit point of a turn's transaction
    _message(b"Q", b"BEGIN\0"),
    _message(b"Q", b"COMMIT;\0"),  # a transaction that wrote no turn
    _message(b"Q", b"BEGIN\0"),
    *_bind(b"s4"),
    _message(b"Q", b"ROLLBACK;\0"),  # a turn abandoned: nothing committed
    _message(b"Q", b"BEGIN\0"),
    _message(b"Q", b"COMMIT;\0"),  # so neither is this one a turn's
    _message(b"P", b"s1\0SELECT 2\0\0\0"),  # the name now stands for something else
    *_bind(b"s1"),
]
EXPECTED: list[CommitPoint | None] = [None] * len(SESSION)
EXPECTED[9], EXPECTED[21] = "write", "COMMIT"


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 100_000])
def test_the_client_stream_is_read_message_by_message_whatever_the_chunks(chunk: int) -> None:
    stream = b"".join(SESSION)
    link = _Link(client=None, server=None)  # type: ignore[arg-type]
    messages: list[bytes] = []
    for start in range(0, len(stream), chunk):
        messages += link.stream.feed(stream[start : start + chunk])
    assert messages == SESSION
    assert [link.commit_point(message) for message in messages] == EXPECTED


def test_a_tls_session_is_passed_on_unread() -> None:
    stream = _ClientStream()
    ssl_request = SESSION[0]
    hello = b"\x16\x03\x01\x00\x05hello"
    assert stream.feed(ssl_request + hello[:3]) == [ssl_request, hello[:3]]
    assert stream.feed(hello[3:]) == [hello[3:]]


@pytest.mark.postgres
async def test_the_proxy_cuts_an_autocommit_write_at_its_execution() -> None:
    """A turn's marked write prepared once and run by name: cut before its execution it is
    not applied; cut just after, it is, and the client never hears so. Unmarked statements,
    reads and another marked write that is not a turn's pass."""
    async with fresh_database("intake_proxy") as database_url:
        admin = await admin_connection(database_url)
        try:
            await admin.execute("CREATE TABLE transcript_entries (x integer)")
            await admin.execute("CREATE TABLE t (x integer)")
            await admin.execute("INSERT INTO t VALUES (0)")
            real = make_url(database_url)
            proxy = CuttableProxy(real.host or "127.0.0.1", real.port or 5432)
            await proxy.start()
            dsn = f"postgresql://{real.username}@127.0.0.1:{proxy.port}/{real.database}"
            turn = f"{COMMIT_POINT_MARK} INSERT INTO transcript_entries (x) VALUES ($1)"
            other = f"{COMMIT_POINT_MARK} UPDATE t SET x = x + $1"
            cuts: list[tuple[CommitCut, int]] = [("before", 0), ("after", 1)]
            try:
                for when, applied in cuts:
                    connection = await asyncpg.connect(dsn, timeout=5)
                    try:
                        await connection.execute("INSERT INTO t VALUES (0)")  # unmarked
                        await connection.fetchval(turn, 1)
                        seen = proxy.commits_seen
                        proxy.arm_commit_cut(when)
                        await connection.fetchval(other, 1)  # passes, armed or not
                        with pytest.raises((OSError, asyncpg.PostgresError, asyncio.TimeoutError)):
                            await connection.fetchval(turn, 2, timeout=5)
                        await proxy.wait_cut()
                    finally:
                        connection.terminate()
                    assert proxy.commits_seen == seen + 1
                    assert proxy.armed_commit_points[-1] == "write"
                    query = "SELECT count(*) FROM transcript_entries WHERE x = 2"
                    assert await admin.fetchval(query) == applied, when
                    await admin.execute("DELETE FROM transcript_entries; DELETE FROM t")
                    await proxy.restore()
            finally:
                await proxy.close()
        finally:
            await admin.close()
