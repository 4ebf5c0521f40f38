"""Several worker processes on one PostgreSQL database: every guarantee still holds.

Four `python -m bot serve` processes on four loopback ports (SO_REUSEPORT balancing cannot be
steered, so the client chooses the worker): 200 people at once, each conversation's
consecutive messages at different workers, about one message in ten sent twice at once to two
workers, and one worker killed with SIGKILL half-way (its clients retry the same message on
another worker). Then: one report per finished conversation, every transcript in order with no
turn lost or doubled, and no failure anywhere but at the killed worker.

A second, smaller test runs `intake serve --workers 2` itself: one port, two processes, a
worker killed and replaced, and a clean stop on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.multiworker_support import (
    SMALL_DIRECTORY,
    Process,
    admin_connection,
    free_port,
    fresh_database,
    run_cli,
    serving_pids,
    start_serve,
    wait_ready,
    worker_env,
)
from tests.e2e.multiworker_swarm import Conversation, Swarm, check_transcript

pytestmark = pytest.mark.postgres

WORKERS = 4
CONVERSATIONS = 200
#: The worker killed half-way, and when: after this many turns in all (of roughly 2,400).
VICTIM = 1
KILL_AFTER_TURNS = 1000
TIME_LIMIT_SECONDS = 90


async def _prepare(database_url: str) -> None:
    env = worker_env(database_url, 0)
    await asyncio.to_thread(run_cli, ["db", "upgrade"], env)
    await asyncio.to_thread(run_cli, ["directory", "import", str(SMALL_DIRECTORY)], env)


async def test_four_workers_200_conversations_one_worker_killed(tmp_path: Path) -> None:
    async with fresh_database() as database_url:
        await _prepare(database_url)
        workers: list[Process] = []
        try:
            workers = [
                start_serve(f"worker-{i}", database_url, free_port(), tmp_path)
                for i in range(WORKERS)
            ]
            connector = aiohttp.TCPConnector(limit=64, force_close=False)
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                await asyncio.gather(*(wait_ready(w, session) for w in workers))
                async with asyncio.timeout(TIME_LIMIT_SECONDS):
                    swarm, conversations = await _run_swarm(workers, session)
                    transcripts = await asyncio.gather(
                        *(swarm.transcript(c) for c in conversations)
                    )
            await _check(swarm, conversations, transcripts, database_url, workers)
        finally:
            for worker in workers:
                worker.reap()


async def _run_swarm(
    workers: list[Process], session: aiohttp.ClientSession
) -> tuple[Swarm, list[Conversation]]:
    kill_now = asyncio.Event()
    swarm = Swarm(workers, session)

    def on_turn() -> None:
        if swarm.turns >= KILL_AFTER_TURNS:
            kill_now.set()

    swarm.on_turn = on_turn

    async def killer() -> None:
        await kill_now.wait()
        swarm.kill(workers[VICTIM])

    kill_task = asyncio.create_task(killer())
    started = time.monotonic()
    try:
        conversations = await asyncio.gather(*(swarm.converse(i) for i in range(CONVERSATIONS)))
    finally:
        kill_task.cancel()
    print(
        f"\n{CONVERSATIONS} conversations, {swarm.turns} turns, {swarm.duplicates_sent} sent twice, "
        f"{swarm.retries} retries, in {time.monotonic() - started:.1f} s; statuses by worker: "
        f"{swarm.outcomes.statuses}"
    )
    return swarm, list(conversations)


async def _check(
    swarm: Swarm,
    conversations: list[Conversation],
    transcripts: list[dict[str, object]],
    database_url: str,
    workers: list[Process],
) -> None:
    victim = workers[VICTIM]
    logs = "\n".join(f"--- {w.name}\n{w.output()[-3000:]}" for w in workers)

    # The kill happened, in the middle, and cost nobody their conversation.
    assert victim.name in swarm.killed, "the worker was never killed"
    errors = [(c.index, c.error) for c in conversations if c.error]
    assert not errors, f"conversations failed: {errors[:5]}\n{logs}"
    assert all(c.done for c in conversations)
    assert swarm.duplicates_sent > 50

    # No failure except at the killed worker, once it was killed; never a 503 (the database
    # stayed up), nor any other 5xx from a live worker.
    killed_at = swarm.killed[victim.name]
    blamed = [f for f in swarm.outcomes.failures if not (f[0] == victim.name and f[3] >= killed_at)]
    assert not blamed, f"failures not caused by the kill: {blamed[:10]}\n{logs}"
    for name, statuses in swarm.outcomes.statuses.items():
        assert all(s < 500 for s in statuses), (name, statuses)
        assert set(statuses) <= {200, 201}, (name, statuses)
    assert all(swarm.outcomes.statuses.get(w.name) for w in workers), "every worker served"

    # Exactly one report per finished conversation, and no other report.
    connection = await admin_connection(database_url)
    try:
        rows = await connection.fetch(
            "SELECT conversation_id, count(*) AS n, min(reference) AS reference "
            "FROM reports GROUP BY conversation_id"
        )
        seqs = await connection.fetch(
            "SELECT conversation_id, array_agg(seq ORDER BY id) AS seqs "
            "FROM transcript_entries GROUP BY conversation_id"
        )
    finally:
        await connection.close()
    reports = {r["conversation_id"]: (r["n"], r["reference"]) for r in rows}
    ours = {c.conversation_id: c for c in conversations}
    assert set(reports) == set(ours), "a report without a finished conversation, or the reverse"
    for conversation_id, (count, reference) in reports.items():
        assert count == 1, conversation_id
        assert ours[conversation_id].last is not None
        assert ours[conversation_id].last["reference"] == reference  # type: ignore[index]

    # Every transcript: stored in order (seq 1, 2, 3, ... as written), and as the API shows
    # it, each sent message exactly once, followed by the very reply that client was given.
    stored = {r["conversation_id"]: list(r["seqs"]) for r in seqs}
    problems = []
    for c, view in zip(conversations, transcripts, strict=True):
        order = stored.get(c.conversation_id, [])
        if order != list(range(1, len(order) + 1)):
            problems.append((c.index, f"seq written out of order or with gaps: {order}"))
        entries = view["transcript"]
        assert isinstance(entries, list)
        if len(entries) != len(order):
            problems.append((c.index, f"API shows {len(entries)} entries, {len(order)} stored"))
        problems.extend((c.index, p) for p in check_transcript(c, entries))
    assert not problems, problems[:10]


# ---------------------------------------------------------------------- intake serve --workers 2


async def _read_pids(process: Process, count: int, within: float = 20) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        pids = serving_pids(process.output())
        if len(pids) >= count:
            return pids
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {count} workers to start:\n{process.output()}")


async def _some_conversations(swarm: Swarm, first: int, count: int) -> list[Conversation]:
    done = await asyncio.gather(*(swarm.converse(i) for i in range(first, first + count)))
    errors = [(c.index, c.error) for c in done if c.error]
    assert not errors, errors[:5]
    return list(done)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(") ", 1)[1][:1] not in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return False


async def test_serve_workers_share_one_port_and_survive_a_crash(tmp_path: Path) -> None:
    async with fresh_database() as database_url:
        await _prepare(database_url)
        port = free_port()
        t0 = time.monotonic()
        parent = start_serve("serve-2", database_url, port, tmp_path, "--workers", "2")
        try:
            first_pids = await _read_pids(parent, 2)
            print(f"\nworkers up after {time.monotonic() - t0:.1f} s")
            connector = aiohttp.TCPConnector(limit=32, force_close=True)  # new connection each time
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                await wait_ready(parent, session)
                swarm = Swarm([parent], session, duplicate_every=5)
                await _some_conversations(swarm, 0, 20)

                # A worker dies: the parent logs it and starts another; the port keeps serving.
                parent_pid = parent.pid
                print(f"20 conversations after {time.monotonic() - t0:.1f} s")
                os.kill(first_pids[0], signal.SIGKILL)
                replaced = await _read_pids(parent, 3)
                assert replaced[2] not in first_pids
                assert parent.alive() and parent.pid == parent_pid
                await wait_ready(parent, session)
                swarm = Swarm([parent], session, duplicate_every=5)
                await _some_conversations(swarm, 100, 20)
                assert "exited with status -9" in parent.output(), parent.output()

            print(f"replaced and 20 more after {time.monotonic() - t0:.1f} s")
            # SIGTERM to the parent: the workers stop gracefully and the parent exits 0.
            parent.popen.send_signal(signal.SIGTERM)
            status = await asyncio.to_thread(parent.popen.wait, 40)
            assert status == 0, parent.output()
            print(f"stopped after {time.monotonic() - t0:.1f} s")
            assert not any(_alive(pid) for pid in replaced[1:]), parent.output()
            assert "Traceback" not in parent.output(), parent.output()
        finally:
            parent.reap()

        connection = await admin_connection(database_url)
        try:
            assert await connection.fetchval("SELECT count(*) FROM reports") == 40
        finally:
            await connection.close()
