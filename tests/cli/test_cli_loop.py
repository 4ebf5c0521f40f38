"""A serving worker runs on uvloop's event loop (the measurements are in BENCHMARKS.md), and
so does the bench's ceiling server, so that their ratio compares the two on the same loop.
Run in a process of its own: `_run_worker` configures this process's logging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import uvloop

from bot.cli import serving_loop

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
from aiohttp import web
import bot.cli as cli
from bot.config import Settings

loops = []
web.run_app = lambda app, **options: loops.append(options["loop"])
cli._run_worker(Settings.from_env({"INTAKE_DATABASE_URL": sys.argv[1]}), False)
(loop,) = loops
print(json.dumps({"loop": type(loop).__module__ + "." + type(loop).__name__}))
loop.close()
"""


def test_a_serving_worker_runs_on_uvloop(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, f"sqlite+aiosqlite:///{tmp_path}/loop.sqlite3"],
        cwd=ROOT,
        env={**os.environ, "INTAKE_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"loop": "uvloop.Loop"}


def test_the_serving_loop_is_a_new_uvloop_loop_each_time() -> None:
    first, second = serving_loop(), serving_loop()
    try:
        assert isinstance(first, uvloop.Loop)
        assert first is not second
    finally:
        first.close()
        second.close()
