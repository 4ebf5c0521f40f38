"""Benchmark 4: worker memory per open conversation.

The app (`python -m bot serve`, one worker, PostgreSQL if available, else SQLite) is warmed
up with 500 conversations, then 10,000 more are opened through the web API (created; the
welcome is their first turn; left open; 200 at a time). RSS growth of the server process
(VmRSS) divided by 10,000 is the cost of an open conversation in a worker. The baseline is python-telegram-bot's ConversationHandler,
which keeps conversations in process memory: /start and one button press for 10,000 chats,
RSS growth after a full collection, divided the same way (`python -m bench.memory --ptb N`).
"""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from typing import Any

from bench.common import PYTHON, ROOT, Row, log, rss_bytes, yes_no
from bench.servers import app_server, database, load, postgres_available

TARGET_BYTES = 2048
WARMUP = 500


def ptb_baseline(n: int) -> float:
    """Bytes per open PTB conversation (run in a fresh process for a clean RSS)."""
    import asyncio

    from bench.engine_cost import build_ptb
    from bench.updates import conversation_updates, prompts

    shown = prompts()
    app, Update = build_ptb()
    loop = asyncio.new_event_loop()
    loop.run_until_complete(app.initialize())

    async def open_conversations(first: int, count: int) -> None:
        for uid in range(first, first + count):
            for data in conversation_updates(uid, shown)[:2]:
                await app.process_update(Update.de_json(data, app.bot))

    loop.run_until_complete(open_conversations(10_000_000, 200))  # warm-up
    gc.collect()
    before = rss_bytes_self()
    loop.run_until_complete(open_conversations(20_000_000, n))
    gc.collect()
    after = rss_bytes_self()
    assert len(app.handlers[0][0]._conversations) >= n
    return (after - before) / n


def rss_bytes_self() -> int:
    import os

    return rss_bytes(os.getpid())


def rows(quick: bool = False, context: dict[str, Any] | None = None) -> list[Row]:
    n = 2_000 if quick else 10_000
    kind = "sqlite" if postgres_available() else "postgres"
    label = "SQLite" if kind == "sqlite" else "PostgreSQL"
    with database(kind) as url, app_server(url) as (port, proc):
        log(f"memory: warming up the server with {WARMUP} conversations ({label})")
        load(
            "web",
            port,
            concurrency=50,
            count=WARMUP,
            turns_per_conversation=-1,
            warmup=0,
            duration=600,
        )
        time.sleep(0.5)
        before = rss_bytes(proc.pid)
        log(f"memory: opening {n:,} conversations")
        result = load(
            "web", port, concurrency=200, count=n, turns_per_conversation=-1, warmup=0, duration=600
        )
        time.sleep(1.0)
        after = rss_bytes(proc.pid)
    per = (after - before) / n
    baseline: float | None = None
    reason = ""
    try:
        done = subprocess.run(
            [PYTHON, "-m", "bench.memory", "--ptb", str(n)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            env={"PYTHONPATH": str(ROOT)},
        )
        baseline = float(done.stdout.strip().splitlines()[-1])
    except Exception as error:  # the baseline is optional
        reason = f"{type(error).__name__}"
    row = Row(
        f"memory per open conversation ({n:,}, {label})",
        f"{per:,.0f} B",
        f"{baseline:,.0f} B" if baseline is not None else f"skipped: {reason}",
        f"{per / baseline:.2f}x" if baseline else "",
        "≤ 2 KiB",
        yes_no(per <= TARGET_BYTES),
    )
    row.note = (
        f"server RSS {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB after {n:,} conversations "
        f"(created, {result['errors']} errors, {result['rate']:.0f} req/s); baseline: "
        "python-telegram-bot ConversationHandler, /start + 1 button per chat, in memory"
    )
    return [row]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--ptb"]:
        print(f"{ptb_baseline(int(sys.argv[2])):.1f}")
