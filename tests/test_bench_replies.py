"""The Telegram one-at-a-time row starts each run once the replies committed before it are
sent (`bench.servers.replies_sent`): a closed loop commits them faster than the send limit
lets them go, and a web run started meanwhile shared the server with their drain. Each
pair runs web first, Telegram right after (`bench.telegram_turns.one_at_a_time_pairs`)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bench import servers
from bench.servers import pending_replies, replies_sent


def _outbox(path: Path, *rows: tuple[str, str]) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, topic TEXT, status TEXT)")
        connection.executemany("INSERT INTO outbox (topic, status) VALUES (?, ?)", rows)


def test_only_telegram_replies_still_to_send_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "bench.sqlite3"
    _outbox(
        path,
        ("telegram.send", "pending"),
        ("telegram.send", "pending"),
        ("telegram.send", "done"),
        ("email.send", "pending"),
    )
    assert pending_replies(f"sqlite+aiosqlite:///{path}") == 2


def test_the_wait_ends_when_the_last_reply_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bench.sqlite3"
    _outbox(path, ("telegram.send", "pending"))
    url = f"sqlite+aiosqlite:///{path}"

    def send_later() -> None:
        time.sleep(0.5)
        with sqlite3.connect(path) as connection:
            connection.execute("UPDATE outbox SET status = 'done'")

    sender = threading.Thread(target=send_later)
    sender.start()
    waited = replies_sent(url, timeout=30)
    sender.join()
    assert 0.4 < waited < 30 and pending_replies(url) == 0
    sleeps: list[float] = []
    monkeypatch.setattr(servers.time, "sleep", sleeps.append)
    replies_sent(url, timeout=30)
    assert sleeps == []  # nothing pending: no wait


def test_a_backlog_that_never_drains_is_measured_anyway_after_the_timeout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bench.sqlite3"
    _outbox(path, ("telegram.send", "pending"))
    assert replies_sent(f"sqlite+aiosqlite:///{path}", timeout=0.3) >= 0.3


def test_each_one_at_a_time_pair_runs_web_first_and_telegram_right_after() -> None:
    """The two halves of a pair seconds apart: the Telegram run's replies drain before the
    next pair's web run, not between a pair's two halves."""
    from bench.telegram_turns import one_at_a_time_pairs, p50_ratio

    runs: list[str] = []

    def run(mode: str) -> dict[str, Any]:
        runs.append(mode)
        return {"mode": mode, "run": len(runs), "p50_ms": 3.0 if mode == "telegram" else 2.0}

    pairs = one_at_a_time_pairs(3, "SQLite", run)
    assert runs == ["web", "telegram"] * 3
    assert [(tg["run"], web["run"]) for tg, web in pairs] == [(2, 1), (4, 3), (6, 5)]
    assert all(tg["mode"] == "telegram" and web["mode"] == "web" for tg, web in pairs)
    assert [p50_ratio(pair) for pair in pairs] == [1.5, 1.5, 1.5]
