"""How a serving worker starts (the measurements are in BENCHMARKS.md): it settles its
garbage collector once everything long-lived exists (the objects made at start frozen out of
collections, the young threshold raised), and it runs on uvloop's event loop, as the bench's
ceiling server does, so that their ratio compares the two on one loop. Run in a process of
its own: this one stays as it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import uvloop

from bot.cli import serving_loop

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio, gc, json, sys
from aiohttp import web
import bot.cli as cli
from bot.config import Settings

served = []
web.run_app = lambda app, **options: served.append((app, options["loop"]))
cli._run_worker(Settings.from_env({"INTAKE_DATABASE_URL": sys.argv[1]}), False, 15)
((app, loop),) = served
loop.close()
before = {"threshold": gc.get_threshold()[0], "frozen": gc.get_freeze_count()}
asyncio.run(app.on_startup[-1](app))
print(json.dumps({
    "loop": type(loop).__module__ + "." + type(loop).__name__,
    "last_on_startup": app.on_startup[-1] is cli.settle_garbage_collector,
    "before": before,
    "after": {"threshold": gc.get_threshold()[0], "frozen": gc.get_freeze_count()},
}))
"""


def _start_a_worker(tmp_path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, f"sqlite+aiosqlite:///{tmp_path}/worker.sqlite3"],
        cwd=ROOT,
        env={**os.environ, "INTAKE_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_worker_settles_its_garbage_collector_after_starting(tmp_path: Path) -> None:
    result = _start_a_worker(tmp_path)
    assert result["last_on_startup"] is True
    assert result["before"]["frozen"] == 0
    assert result["before"]["threshold"] < 10_000  # Python's own default
    assert result["after"]["threshold"] == 10_000
    assert result["after"]["frozen"] > 10_000  # the libraries, the dialogue, the catalogs


def test_a_serving_worker_runs_on_uvloop(tmp_path: Path) -> None:
    assert _start_a_worker(tmp_path)["loop"] == "uvloop.Loop"


def test_the_serving_loop_is_a_new_uvloop_loop_each_time() -> None:
    first, second = serving_loop(), serving_loop()
    try:
        assert isinstance(first, uvloop.Loop)
        assert first is not second
    finally:
        first.close()
        second.close()
