"""The bench's timing of the SQLite writer's commits (bench/sqlite_commits.py): each commit of
a connection opened meanwhile is recorded under its database file, and nothing else is."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from bench.sqlite_commits import _summary, _timed_commits


def test_each_commit_is_timed_under_its_database_file(tmp_path: Path) -> None:
    first, second = tmp_path / "a.sqlite3", tmp_path / "b.sqlite3"
    original = sqlite3.connect
    with _timed_commits() as timings:
        for path, commits in ((first, 3), (second, 1)):
            with contextlib.closing(sqlite3.connect(path)) as connection:
                connection.execute("CREATE TABLE t (x)")
                for n in range(commits):
                    connection.execute("INSERT INTO t VALUES (?)", (n,))
                    connection.commit()
    assert sqlite3.connect is original  # the wrapper is gone after the block
    assert {name: len(times) for name, times in timings.items()} == {
        str(first.resolve()): 3,
        str(second.resolve()): 1,
    }
    assert all(time >= 0 for times in timings.values() for time in times)
    with contextlib.closing(sqlite3.connect(first)) as connection:
        connection.execute("INSERT INTO t VALUES (9)")
        connection.commit()
    assert len(timings[str(first.resolve())]) == 3


def test_the_slow_commits_are_counted_and_timed_per_10000() -> None:
    summary = _summary([0.2] * 9_998 + [4.0, 6.0])
    assert summary["commits"] == 10_000
    assert summary["slow_per_10k"] == 2
    assert summary["slow_ms_per_10k"] == 10.0
    assert summary["max"] == 6.0
    assert _summary([])["commits"] == 0
