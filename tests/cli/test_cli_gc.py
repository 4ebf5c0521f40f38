"""A serving worker settles its garbage collector once everything long-lived exists: the
objects made at start are frozen out of collections and the young threshold is raised (the
measurements are in BENCHMARKS.md). Run in a process of its own: this one stays as it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio, gc, json, sys
from aiohttp import web
import bot.cli as cli
from bot.config import Settings

served = []
web.run_app = lambda app, **options: served.append(app)
cli._run_worker(Settings.from_env({"INTAKE_DATABASE_URL": sys.argv[1]}), False)
(app,) = served
before = {"threshold": gc.get_threshold()[0], "frozen": gc.get_freeze_count()}
asyncio.run(app.on_startup[-1](app))
print(json.dumps({
    "last_on_startup": app.on_startup[-1] is cli.settle_garbage_collector,
    "before": before,
    "after": {"threshold": gc.get_threshold()[0], "frozen": gc.get_freeze_count()},
}))
"""


def test_a_worker_settles_its_garbage_collector_after_starting(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, f"sqlite+aiosqlite:///{tmp_path}/gc.sqlite3"],
        cwd=ROOT,
        env={**os.environ, "INTAKE_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["last_on_startup"] is True
    assert result["before"]["frozen"] == 0
    assert result["before"]["threshold"] < 10_000  # Python's own default
    assert result["after"]["threshold"] == 10_000
    assert result["after"]["frozen"] > 10_000  # the libraries, the dialogue, the catalogs
