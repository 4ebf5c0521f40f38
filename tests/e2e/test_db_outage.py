"""The database goes away in the middle of a turn, and comes back.

One real worker process reaches PostgreSQL through a proxy that the test cuts (every connection
reset, new ones refused) without disturbing anyone else on the server. While it is cut the
API answers 503 with the JSON error shape, /readyz says not ready and /healthz still says the
process lives. Once it is back, the worker recovers by itself: the client's retry of the same
message (same client_message_id) succeeds and the conversation goes on. A turn cut before its
commit point (COMMIT, or the turn's single autocommit write) left nothing behind; a turn cut
just after it was kept, and the retry is answered with it instead of being applied twice.
Both forms are cut: a plain turn commits by its one autocommit write (PostgreSQL's unlocked
turn), the submission (a report and its outbox rows with the turn) by COMMIT.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy.engine import make_url

from tests.e2e.multiworker_proxy import CommitCut, CommitPoint, CuttableProxy
from tests.e2e.multiworker_support import (
    admin_connection,
    free_port,
    fresh_database,
    run_cli,
    start_serve,
    wait_ready,
    worker_env,
)

pytestmark = pytest.mark.postgres


class Client:
    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url
        self.conversation: dict[str, Any] = {}

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, str]:
        async with self.session.request(method, self.base_url + path, **kwargs) as response:
            body = await response.json() if response.content_type == "application/json" else None
            return response.status, body, response.content_type

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.conversation['token']}"}

    async def create(self) -> tuple[int, Any, str]:
        result = await self.call("POST", "/api/v1/conversations", json={})
        if result[0] == 201:
            self.conversation = result[1]
        return result

    async def send(self, message: dict[str, str], message_id: str) -> tuple[int, Any, str]:
        path = f"/api/v1/conversations/{self.conversation['conversation_id']}/messages"
        body = {**message, "client_message_id": message_id}
        return await self.call("POST", path, json=body, headers=self._auth())

    async def view(self) -> tuple[int, Any, str]:
        path = f"/api/v1/conversations/{self.conversation['conversation_id']}"
        return await self.call("GET", path, headers=self._auth())


def assert_unavailable(result: tuple[int, Any, str]) -> None:
    status, body, content_type = result
    assert status == 503, result
    assert content_type == "application/json", result
    assert set(body) == {"error"} and body["error"]["code"], body
    assert "Traceback" not in str(body) and "asyncpg" not in str(body), body


async def wait_status(client: Client, path: str, status: int, within: float = 15) -> None:
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        last = (await client.call("GET", path))[0]
        if last == status:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} answered {last}, not {status}, for {within} s")


SCRIPT: list[dict[str, str]] = [
    {"choice": "start"},
    {"choice": "good"},
    {"choice": "gp"},
    {"text": "Qwxz Nowhere Surgery"},  # cut before its commit point (the autocommit write)
    {"choice": "self"},  # cut just after its commit point (the autocommit write)
    {"text": "The nurse was kind and explained everything."},
    {"choice": "yes"},
    {"choice": "no"},
    {"choice": "no"},
    {"choice": "submit"},  # cut before its COMMIT, then just after it
]
STEPS_AFTER = [
    "experience",
    "service_type",
    "provider",
    "relationship",
    "what_happened",
    "share_with_service",
    "contact",
    "referral",
    "summary",
    "submitted",
]
CUT_BEFORE_COMMIT, CUT_AFTER_COMMIT, SUBMIT = 3, 4, 9
#: Per message: the cuts made at its commit point, in order, and what that point is.
CUTS: dict[int, tuple[list[CommitCut], CommitPoint]] = {
    CUT_BEFORE_COMMIT: (["before"], "write"),
    CUT_AFTER_COMMIT: (["after"], "write"),
    SUBMIT: (["before", "after"], "COMMIT"),
}


async def test_database_outage_mid_turn(tmp_path: Path) -> None:
    async with fresh_database("intake_outage") as database_url:
        await asyncio.to_thread(run_cli, ["db", "upgrade"], worker_env(database_url, 0))
        real = make_url(database_url)
        proxy = CuttableProxy(real.host or "127.0.0.1", real.port or 5432)
        await proxy.start()
        proxied_url = real.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False
        )
        worker = start_serve("outage-worker", proxied_url, free_port(), tmp_path)
        try:
            timeout = aiohttp.ClientTimeout(total=20)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                await wait_ready(worker, session)
                client = Client(session, worker.base_url)
                await _run(client, proxy, database_url, worker.output)
        finally:
            worker.reap()
            await proxy.close()


async def _run(client: Client, proxy: CuttableProxy, database_url: str, logs: Any) -> None:
    status, body, _ = await client.create()
    assert status == 201, body
    conversation_id = body["conversation_id"]
    replies: list[dict[str, Any]] = []

    for n, (message, step) in enumerate(zip(SCRIPT, STEPS_AFTER, strict=True)):
        message_id = f"m-{n}"
        cuts, commit_point = CUTS.get(n, ([], "write"))
        for when in cuts:
            proxy.arm_commit_cut(when)
            assert_unavailable(await client.send(message, message_id))
            await proxy.wait_cut()
            assert proxy.armed_commit_points[-1] == commit_point, proxy.armed_commit_points
            committed = await _committed(database_url, conversation_id, message_id)
            assert committed == (when == "after"), "the cut fell elsewhere than at the commit"

            # While the database is away: clean 503s, not ready, but alive.
            assert_unavailable(await client.send(message, message_id))
            assert_unavailable(await client.view())
            assert_unavailable(await client.call("POST", "/api/v1/conversations", json={}))
            assert_unavailable(await client.call("GET", "/readyz"))
            assert (await client.call("GET", "/healthz"))[0] == 200

            await proxy.restore()
            await wait_status(client, "/readyz", 200)

        status, reply, _ = await client.send(message, message_id)
        assert status == 200, (n, reply, logs())
        assert reply["step"] == step, (n, reply)
        replies.append(reply)
        # A plain repeat after recovery is still answered from the log, not applied again.
        again = await client.send(message, message_id)
        assert again[0] == 200 and again[1]["step"] == step, again

    assert replies[-1]["done"] is True and replies[-1]["reference"]

    status, view, _ = await client.view()
    assert status == 200, view
    users = [(e["kind"], e["value"]) for e in view["transcript"] if e["role"] == "user"]
    assert users == [next(iter(m.items())) for m in SCRIPT]

    connection = await admin_connection(database_url)
    try:
        seqs = await connection.fetchval(
            "SELECT array_agg(seq ORDER BY id) FROM transcript_entries WHERE conversation_id = $1",
            conversation_id,
        )
        reports = await connection.fetch(
            "SELECT reference FROM reports WHERE conversation_id = $1", conversation_id
        )
        handled = await connection.fetchval(
            "SELECT count(*) FROM inbound_messages WHERE scope = $1", conversation_id
        )
    finally:
        await connection.close()
    assert list(seqs) == list(range(1, len(view["transcript"]) + 1))
    assert [r["reference"] for r in reports] == [replies[-1]["reference"]]
    assert handled == len(SCRIPT)


async def _committed(database_url: str, conversation_id: str, message_id: str) -> bool:
    """Asked of PostgreSQL directly, past the proxy."""
    connection = await admin_connection(database_url)
    try:
        found = await connection.fetchval(
            "SELECT count(*) FROM inbound_messages WHERE scope = $1 AND message_id = $2",
            conversation_id,
            message_id,
        )
    finally:
        await connection.close()
    return bool(found)
