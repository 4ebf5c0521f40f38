"""The `intake` command as an operator uses it: a real process on a real database."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.app import build_service
from bot.config import Settings
from bot.engine.types import Inbound
from tests.fixtures import SMALL_DIRECTORY

ROOT = Path(__file__).resolve().parents[2]
#: A PostgreSQL URL that points nowhere: for checks that stop `intake serve` before it connects.
POSTGRES_NOWHERE = "postgresql+asyncpg://nobody@127.0.0.1:1/x"
SPEC_FIELDS = {
    "reference",
    "created_at",
    "channel",
    "locale",
    "urgent",
    "experience",
    "service_type",
    "provider_text",
    "location_id",
    "relationship",
    "works_there",
    "when",
    "what_happened",
    "risk",
    "authorities",
    "complaint",
    "mha",
    "contact",
    "alerts",
}


def intake(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INTAKE_DATABASE_URL": db_url, "INTAKE_LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/cli.sqlite3"


async def submit_report(
    db_url: str, what_happened: str, risk: str = "yes", referral_name: str | None = None
) -> str:
    service = await build_service(Settings(database_url=db_url))
    try:
        start = await service.start(channel="terminal")
        steps = [
            ("choice", "start"),
            ("choice", "poor"),
            ("choice", "care_home"),
            ("text", "Qwxz Zzyq"),
            ("choice", "friend_family"),
            ("choice", "skip"),
            ("choice", "skip"),
            ("text", what_happened),
            ("choice", "no"),  # not to be shared with the service
            ("choice", risk),
            ("choice", "neither"),
            ("choice", "not_yet"),
            ("choice", "continue"),
            ("choice", "yes"),
            ("text", '=HYPERLINK("http://evil")'),
            ("text", "pat@example.org"),
            ("choice", "skip"),
            *(
                [("choice", "yes"), ("text", referral_name)]
                if referral_name
                else [("choice", "no")]
            ),
            ("choice", "submit"),
        ]
        reply = None
        for kind, value in steps:
            reply = await service.handle(start.conversation_id, Inbound(kind, value))  # type: ignore[arg-type]
        assert reply is not None and reply.reference
        return reply.reference
    finally:
        await service.storage.close()


def test_db_upgrade_and_directory_import_are_repeatable(db_url: str) -> None:
    assert intake(db_url, "db", "upgrade").returncode == 0
    first = intake(db_url, "directory", "import", str(SMALL_DIRECTORY))
    assert first.returncode == 0, first.stderr
    assert "new" in first.stdout and "skipped" in first.stdout
    again = intake(db_url, "directory", "import", str(SMALL_DIRECTORY))
    assert again.returncode == 0 and "(0 new, 0 updated, 0 removed)" in again.stdout


def test_directory_import_refuses_a_file_that_is_not_the_directory(
    db_url: str, tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.csv"
    bogus.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    result = intake(db_url, "directory", "import", str(bogus))
    assert result.returncode == 2 and "not a directory file" in result.stderr
    assert intake(db_url, "directory", "import", str(tmp_path / "missing.csv")).returncode == 2


async def test_reports_list_show_and_export(db_url: str) -> None:
    urgent = await submit_report(
        db_url, "Left alone <script>alert(1)</script>", risk="yes", referral_name="Mind in Leeds"
    )
    routine = await submit_report(db_url, "-1+1 was the bill", risk="no")

    listed = intake(db_url, "reports", "list")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[1].startswith(urgent) and lines[2].startswith(routine)  # urgent first
    assert "pat@example.org" not in listed.stdout  # the queue shows no contact details

    shown = intake(db_url, "reports", "show", routine.lower().replace("-", ""))
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["reference"] == routine
    assert intake(db_url, "reports", "show", "NOPE-NOPE").returncode == 1

    exported = intake(db_url, "reports", "export", "--format", "jsonl")
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [r["reference"] for r in records] == [urgent, routine]
    assert SPEC_FIELDS <= set(records[0])
    assert records[0]["urgent"] is True and records[0]["labels_en"]["risk"] == "Yes"
    assert records[0]["what_happened"] == "Left alone <script>alert(1)</script>"
    # The regulator's own questions: sharing with the service, and who pointed them here.
    assert records[0]["share_with_service"] == "no"
    assert records[0]["labels_en"]["share_with_service"] == "No"
    assert (records[0]["referral"], records[0]["referral_name"]) == ("yes", "Mind in Leeds")
    assert (records[1]["referral"], records[1]["referral_name"]) == ("no", None)
    assert records[0]["contact"] == {
        "name": '=HYPERLINK("http://evil")',
        "email": "pat@example.org",
        "phone": None,
    }

    as_csv = intake(db_url, "reports", "export", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["reference"] for r in rows] == [urgent, routine]
    # Cells a spreadsheet would run as formulas are defused.
    assert rows[0]["contact_name"] == '\'=HYPERLINK("http://evil")'
    assert rows[1]["what_happened"] == "'-1+1 was the bill"
    assert rows[0]["service_type_en"] == "Care home"
    assert rows[0]["referral_name"] == "Mind in Leeds" and rows[0]["referral_en"] == "Yes"
    assert rows[1]["referral_name"] == "" and rows[0]["share_with_service_en"] == "No"


def test_no_command_prints_help(db_url: str) -> None:
    result = intake(db_url)
    assert result.returncode == 2 and "serve" in result.stdout


def test_several_workers_refuse_sqlite_and_telegram_polling(db_url: str) -> None:
    sqlite = intake(db_url, "serve", "--workers", "2")
    assert sqlite.returncode == 2 and "PostgreSQL" in sqlite.stderr
    polling = serve_on_postgres_nowhere(
        "2", INTAKE_TELEGRAM_TOKEN="1:x", INTAKE_TELEGRAM_MODE="polling"
    )
    assert polling.returncode == 2 and "single worker" in polling.stderr


def serve_on_postgres_nowhere(workers: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`intake serve --workers N` with a PostgreSQL URL that points nowhere: for the checks
    that must stop it before it touches the database."""
    return subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--workers", workers],
        cwd=ROOT,
        env={
            **os.environ,
            "INTAKE_DATABASE_URL": POSTGRES_NOWHERE,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("url", "connections", "workers", "expected"),
    [
        (POSTGRES_NOWHERE, None, 1, 15),  # not set: 15 a worker, as one of several processes
        (POSTGRES_NOWHERE, None, 4, 15),
        (POSTGRES_NOWHERE, "80", 1, 50),
        (POSTGRES_NOWHERE, "80", 4, 12),
        ("sqlite+aiosqlite:///./var/x.sqlite3", "80", 1, 15),  # one connection whatever is asked
    ],
)
def test_each_serving_worker_gets_its_share_of_the_connections(
    url: str, connections: str | None, workers: int, expected: int
) -> None:
    """`intake serve` splits INTAKE_DATABASE_CONNECTIONS, when it is set, between its workers
    (`storage.sqlalchemy_storage.serving_pool_size`) and hands each its share; unset, each
    worker holds 15 for its turns whatever else shares the database."""
    from bot import cli

    env = {"INTAKE_DATABASE_URL": url}
    if connections is not None:
        env["INTAKE_DATABASE_CONNECTIONS"] = connections
    assert cli._serving_pool_size(Settings.from_env(env), workers) == expected


def test_serve_refuses_too_few_database_connections_for_its_workers() -> None:
    """Each worker needs 8 connections for its outbox dispatchers and at least 5 for its
    turns: 4 workers in 40 connections would each get 2, so `intake serve` says so and stops
    before it migrates or starts anything (the URL points nowhere)."""
    result = serve_on_postgres_nowhere("4", INTAKE_DATABASE_CONNECTIONS="40")
    assert result.returncode == 2
    assert "INTAKE_DATABASE_CONNECTIONS" in result.stderr and "4 workers" in result.stderr
    assert "52 in all" in result.stderr


def test_purge_keeps_at_least_a_week(db_url: str) -> None:
    assert intake(db_url, "conversations", "purge", "--idle-days", "3").returncode == 2
    result = intake(db_url, "conversations", "purge")
    assert result.returncode == 0 and "ended 0 conversations" in result.stdout


async def test_the_daily_purge_erases_replies_kept_past_the_retry_window(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replies kept for retries of a submitted report's messages repeat its answers; the daily
    `intake conversations purge` erases those older than INTAKE_REPLY_RETENTION_HOURS."""
    import sqlite3

    await submit_report(db_url, "Wobbly handrail nobody fixed", risk="no")
    path = db_url.split("///", 1)[1]

    def kept() -> int:
        with sqlite3.connect(path) as connection:
            return int(connection.execute("SELECT count(*) FROM inbound_messages").fetchone()[0])

    # The terminal sends no message ids; keep a reply as the web and Telegram do.
    with sqlite3.connect(path) as connection:
        connection.execute(
            "INSERT INTO inbound_messages (scope, message_id, reply, created_at) "
            "VALUES ('w', 'old', '{}', datetime('now', '-25 hours')), "
            "('w', 'new', '{}', datetime('now', '-1 hours'))"
        )
    result = intake(db_url, "conversations", "purge")
    assert result.returncode == 0, result.stderr
    assert "erased 1 replies" in result.stdout and kept() == 1
    monkeypatch.setenv("INTAKE_REPLY_RETENTION_HOURS", "0")
    refused = intake(db_url, "conversations", "purge")
    assert refused.returncode == 2 and kept() == 1
