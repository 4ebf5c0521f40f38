"""The Telegram one-at-a-time row: each pair on a fresh server (`bench.telegram_turns.
pair_servers`), since a closed loop of one chat commits replies far faster than the send limit
lets them go and the next pair would share the server with their drain; each pair runs the
web channel alone first, then a web conversation and a chat in turn, whose two channels'
turns make the pair (`bench.telegram_turns.one_at_a_time_pairs`)."""

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
        return _result(mode, 1.0)

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
        "interleaved on 1 (pid 1001, 1)",
        "server 1 stopped",
        "database dropped",
        "database postgres",
        "server 2 on url for http://api",
        "web on 2 (pid 1002, 1)",
        "interleaved on 2 (pid 1002, 1)",
        "server 2 stopped",
        "database dropped",
    ]


def test_each_pair_is_the_two_channels_of_one_interleaved_run_after_web_alone() -> None:
    """Both halves of a pair come from one run where the channels take turns, so that the
    machine's speed cannot move between them; the web run alone before it, on the same fresh
    server, is kept for the stricter comparison."""
    from bench.telegram_turns import one_at_a_time_pairs, p50_ratio

    runs: list[str] = []

    def run(mode: str) -> dict[str, Any]:
        runs.append(mode)
        return _result(mode, 1.0 + len(runs))

    pairs = one_at_a_time_pairs(3, "SQLite", run)
    assert runs == ["web", "interleaved"] * 3
    # Run n's channels: web at n, Telegram at 1.5 n; the web run alone before it at n - 1.
    assert [(tg["p50_ms"], web["p50_ms"]) for tg, web in pairs] == [
        (4.5, 3.0),
        (7.5, 5.0),
        (10.5, 7.0),
    ]
    assert [p50_ratio(pair) for pair in pairs] == [1.5, 1.5, 1.5]
    assert [tg["web_alone_p50_ms"] for tg, _web in pairs] == [2.0, 4.0, 6.0]
    assert all(tg["steal_share"] == web["steal_share"] == 0.01 for tg, web in pairs)


def _result(mode: str, p50_ms: float) -> dict[str, Any]:
    """A load run's result as `bench.servers.load` gives it; an interleaved run's channels
    at `p50_ms` for web and half as much again for Telegram."""
    result: dict[str, Any] = {"mode": mode, "p50_ms": p50_ms, "errors": 0, "steal_share": 0.01}
    if mode == "interleaved":
        result["channels"] = {
            "web": {"p50_ms": p50_ms, "p99_ms": 2 * p50_ms, "rate": 100.0, "turns": 500},
            "telegram": {"p50_ms": 1.5 * p50_ms, "p99_ms": 3 * p50_ms, "rate": 100.0, "turns": 500},
        }
    return result
