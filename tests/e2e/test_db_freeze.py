"""PostgreSQL's network freezes (hangs, not down) in the middle of a turn.

Worker A reaches PostgreSQL through a proxy that freezes at the turn's commit point (COMMIT,
or the turn's single autocommit write), and nothing fails by itself. Worker B reaches
PostgreSQL directly. Both forms are frozen:
- a plain turn's autocommit write (PostgreSQL's unlocked turn): A holds no lock, but its
  write is held in the network and reaches the server once the network is back, after the
  turn was applied on B: that late, stale write must fail its revision and duplicate checks
  on the server and change nothing;
- the submission's COMMIT (the report and its outbox rows are written in a transaction with
  the turn): A is stuck with the conversation's row lock held.
What must hold, each time: A answers 503 with Retry-After within seconds instead of waiting
for the network; the person's retry on B gets through within seconds (at a COMMIT, the server
ends A's stuck transaction and frees the lock, instead of B waiting for it as long as the
freeze lasts); and when the network is back, A serves again, and the turn was applied exactly
once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy.engine import make_url

from tests.e2e.multiworker_proxy import CuttableProxy
from tests.e2e.multiworker_support import (
    admin_connection,
    free_port,
    fresh_database,
    run_cli,
    start_serve,
    wait_ready,
    worker_env,
)
from tests.e2e.test_db_outage import SCRIPT, STEPS_AFTER, SUBMIT, Client, wait_status

pytestmark = pytest.mark.postgres

#: Longer than every database timeout of a serving worker added up, far shorter than the
#: freeze: a request still waiting this long is waiting for the network.
CLIENT_TIMEOUT_SECONDS = 20
RETRIES = 8


async def _send_until_answered(client: Client, message: dict[str, str], message_id: str) -> Any:
    """What the widget does: on 503 or 429, wait Retry-After seconds and send again."""
    for _ in range(RETRIES):
        status, body, content_type = await client.send(message, message_id)
        if status == 200:
            return body
        assert status in (429, 503), (status, body)
        assert content_type == "application/json"
        await asyncio.sleep(1)
    raise AssertionError(f"no answer after {RETRIES} tries")


async def test_a_frozen_database_connection_holds_nobody_for_long(tmp_path: Path) -> None:
    async with fresh_database("intake_freeze") as database_url:
        await asyncio.to_thread(run_cli, ["db", "upgrade"], worker_env(database_url, 0))
        real = make_url(database_url)
        proxy = CuttableProxy(real.host or "127.0.0.1", real.port or 5432)
        await proxy.start()
        proxied_url = real.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False
        )
        frozen = start_serve("frozen-worker", proxied_url, free_port(), tmp_path)
        healthy = start_serve("healthy-worker", database_url, free_port(), tmp_path)
        try:
            timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_SECONDS)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                await wait_ready(frozen, session)
                await wait_ready(healthy, session)
                await _run(
                    Client(session, frozen.base_url),
                    Client(session, healthy.base_url),
                    proxy,
                    database_url,
                )
        finally:
            frozen.reap()
            healthy.reap()
            await proxy.close()


async def _run(on_a: Client, on_b: Client, proxy: CuttableProxy, database_url: str) -> None:
    status, created, _ = await on_a.create()
    assert status == 201, created
    on_b.conversation = on_a.conversation
    status, reply, _ = await on_a.send({"choice": "start"}, "m-0")
    assert status == 200 and reply["step"] == "experience", reply

    proxy.arm_commit_freeze()
    status, body, content_type = await on_a.send({"choice": "good"}, "m-1")
    assert proxy.is_frozen
    assert status == 503, body
    assert content_type == "application/json" and body["error"]["code"]
    assert proxy.armed_commit_points == ["write"]
    # The retry on a healthy worker is not held by the stuck worker.
    reply = await _send_until_answered(on_b, {"choice": "good"}, "m-1")
    assert reply["step"] == "service_type", reply
    status, reply, _ = await on_b.send({"choice": "gp"}, "m-2")
    assert status == 200 and reply["step"] == "provider", reply

    conversation_id = on_a.conversation["conversation_id"]
    before_thaw = await _stored(database_url, conversation_id)
    proxy.thaw()
    # A's write, held until now, reaches the server late (after the turn was applied on B):
    # the server answers it, and it changed nothing.
    await proxy.wait_held_commit_answered()
    assert await _stored(database_url, conversation_id) == before_thaw
    await wait_status(on_a, "/readyz", 200, within=CLIENT_TIMEOUT_SECONDS)
    # Worker A serves again, and repeats are answered, not applied again.
    status, reply, _ = await on_a.send({"choice": "good"}, "m-1")
    assert status == 200 and reply["step"] == "service_type", reply
    status, view, _ = await on_a.view()
    assert status == 200 and view["step"] == "provider", view

    handled, seqs, _reports, _revision = await _stored(database_url, conversation_id)
    assert handled == 3
    assert list(seqs) == list(range(1, len(seqs) + 1))
    users = [(e["kind"], e["value"]) for e in view["transcript"] if e["role"] == "user"]
    assert users == [("choice", "start"), ("choice", "good"), ("choice", "gp")]

    # Up to the summary on B, then the submission, which commits by COMMIT, frozen on A.
    for n in range(3, SUBMIT):
        status, reply, _ = await on_b.send(SCRIPT[n], f"m-{n}")
        assert status == 200 and reply["step"] == STEPS_AFTER[n], (n, reply)
    submit_id = f"m-{SUBMIT}"
    proxy.arm_commit_freeze()
    status, body, content_type = await on_a.send(SCRIPT[SUBMIT], submit_id)
    assert proxy.is_frozen
    assert status == 503, body
    assert content_type == "application/json" and body["error"]["code"]
    assert proxy.armed_commit_points == ["write", "COMMIT"]
    # The retry on a healthy worker is not held by the stuck worker's lock.
    submitted = await _send_until_answered(on_b, SCRIPT[SUBMIT], submit_id)
    assert submitted["step"] == STEPS_AFTER[SUBMIT] and submitted["reference"], submitted

    proxy.thaw()
    await wait_status(on_a, "/readyz", 200, within=CLIENT_TIMEOUT_SECONDS)
    # Worker A serves again, and the repeat is answered, not applied again.
    status, reply, _ = await on_a.send(SCRIPT[SUBMIT], submit_id)
    assert status == 200 and reply["reference"] == submitted["reference"], reply
    status, view, _ = await on_a.view()
    assert status == 200 and view["step"] == STEPS_AFTER[SUBMIT], view

    handled, seqs, reports, _revision = await _stored(database_url, conversation_id)
    assert handled == len(SCRIPT)
    assert list(seqs) == list(range(1, len(seqs) + 1))
    assert reports == [submitted["reference"]]
    users = [(e["kind"], e["value"]) for e in view["transcript"] if e["role"] == "user"]
    assert users == [next(iter(m.items())) for m in SCRIPT]


async def _stored(database_url: str, conversation_id: str) -> tuple[int, list[int], list[str], int]:
    """What PostgreSQL holds of the conversation, asked directly (past the proxy): messages
    handled, transcript seqs (every line, in order), report references and its revision."""
    connection = await admin_connection(database_url)
    try:
        revision = await connection.fetchval(
            "SELECT revision FROM conversations WHERE id = $1", conversation_id
        )
        handled = await connection.fetchval(
            "SELECT count(*) FROM inbound_messages WHERE scope = $1", conversation_id
        )
        seqs = await connection.fetchval(
            "SELECT array_agg(seq ORDER BY seq) FROM transcript_entries WHERE conversation_id = $1",
            conversation_id,
        )
        reports = await connection.fetch(
            "SELECT reference FROM reports WHERE conversation_id = $1", conversation_id
        )
    finally:
        await connection.close()
    return handled, list(seqs), [r["reference"] for r in reports], revision
