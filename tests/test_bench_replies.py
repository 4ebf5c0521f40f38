"""The Telegram one-at-a-time row starts each run once the replies committed before it are
sent (`bench.servers.replies_sent`): a closed loop commits them faster than the send limit
lets them go, and a web run started meanwhile shared the server with their drain."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

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
