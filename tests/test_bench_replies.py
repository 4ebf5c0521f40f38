"""The Telegram one-at-a-time row: each pair on a fresh server (`bench.telegram_turns.
pair_servers`), since a closed loop of one chat commits replies far faster than the send limit
lets them go and the next pair would share the server with their drain; each pair runs web
first, Telegram right after (`bench.telegram_turns.one_at_a_time_pairs`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from bench import telegram_turns


def test_each_pair_runs_on_a_fresh_server_the_one_before_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[str] = []
    servers = iter(range(1, 100))

    @contextlib.contextmanager
    def database(kind: str) -> Iterator[str]:
        events.append(f"database {kind}")
        yield "url"
        events.append("database dropped")

    @contextlib.contextmanager
    def fake_api() -> Iterator[tuple[str, str]]:
        yield "http://api", "fake"

    @contextlib.contextmanager
    def app_server(url: str, telegram_api: str) -> Iterator[tuple[int, Any]]:
        port = next(servers)
        events.append(f"server {port} on {url} for {telegram_api}")
        yield port, type("Proc", (), {"pid": 1000 + port})()
        events.append(f"server {port} stopped")

    def load(mode: str, port: int, **kwargs: Any) -> dict[str, Any]:
        events.append(f"{mode} on {port} (pid {kwargs['server_pid']}, {kwargs['concurrency']})")
        return {"mode": mode, "p50_ms": 1.0}

    for name, fake in {
        "database": database,
        "fake_api": fake_api,
        "app_server": app_server,
        "load": load,
    }.items():
        monkeypatch.setattr(telegram_turns, name, fake)
    with telegram_turns.pair_servers("postgres", {"duration": 1.0}) as run:
        telegram_turns.one_at_a_time_pairs(2, "PostgreSQL", run)
    assert events == [
        "database postgres",
        "server 1 on url for http://api",
        "web on 1 (pid 1001, 1)",
        "telegram on 1 (pid 1001, 1)",
        "server 1 stopped",
        "database dropped",
        "database postgres",
        "server 2 on url for http://api",
        "web on 2 (pid 1002, 1)",
        "telegram on 2 (pid 1002, 1)",
        "server 2 stopped",
        "database dropped",
    ]


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
