"""Secrets are redacted from every log record, whichever logger or handler it goes through."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.logging_setup import (
    LOG_FORMAT,
    REDACTED,
    LineFormatter,
    SecretRedactor,
    install_redaction,
    quiet_libraries,
    secrets_in_environment,
)

TOKEN = "5550001:AAF-redaction-test-token"
ROOT = Path(__file__).resolve().parents[2]


def test_secrets_are_found_by_name_and_in_urls() -> None:
    environ = {
        "INTAKE_TELEGRAM_TOKEN": TOKEN,
        "INTAKE_TELEGRAM_WEBHOOK_SECRET": "hook-secret-1",
        "INTAKE_NOTIFY_API_KEY": "notify-key-2",
        "INTAKE_ALERT_WEBHOOK_SECRET": "alert-secret-3",
        "INTAKE_HANDOFF_SECRET": "handoff-secret-4",
        "INTAKE_DATABASE_URL": "postgresql+asyncpg://intake:db%40pass-5@db/intake",
        "INTAKE_SMTP_URL": "smtps://mailer:smtp-pass-6@smtp.example.org:465",
        "INTAKE_TELEGRAM_PUBLIC_URL": "https://intake.example.org",
        "INTAKE_PORT": "8080",
        "HOME": "/root",
        "INTAKE_EMPTY_TOKEN": "  ",
    }
    assert secrets_in_environment(environ) == {
        TOKEN,
        "hook-secret-1",
        "notify-key-2",
        "alert-secret-3",
        "handoff-secret-4",
        "db%40pass-5",
        "smtp-pass-6",
    }


def test_every_part_of_a_record_is_redacted() -> None:
    redactor = SecretRedactor()
    redactor.add([TOKEN, "db%40pass-5", None])
    try:
        raise ConnectionError(f"https://api.telegram.org/bot{TOKEN}/getMe failed")
    except ConnectionError:
        record = logging.LogRecord(
            "httpx", logging.INFO, __file__, 1, "HTTP Request: %s %r", ("POST", TOKEN), None
        )
        record.exc_info = sys.exc_info()
    record.stack_info = f"stack with db@pass-5 and {TOKEN}"
    assert redactor.filter(record) is True
    text = logging.Formatter().format(record)
    assert TOKEN not in text and "pass-5" not in text
    assert text.count(REDACTED) >= 3
    assert "HTTP Request: POST" in text
    assert record.exc_info is None, "a traceback that held a secret must not be formatted again"


def test_a_traceback_without_a_secret_keeps_its_exception_for_later_filters() -> None:
    """aiohttp's server log filter tells a client's malformed request from a server error by
    the exception on the record; redaction must not take it away when there is nothing to hide."""
    redactor = SecretRedactor()
    redactor.add([TOKEN])
    try:
        raise ValueError("nothing secret here")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert redactor.filter(record) is True
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)
    # The token in a URL, percent-encoded, is found too.
    assert redactor.redact("bot5550001%3AAAF-redaction-test-token/x") == f"bot{REDACTED}/x"


@pytest.fixture
def stream_handler() -> Iterator[io.StringIO]:
    """A handler added after the redaction was installed, on a logger that does not
    propagate: neither a logger's nor the root handlers' filters would see its records."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("some.library.deep")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield stream
    logger.removeHandler(handler)
    logger.propagate = True


def test_records_of_any_logger_are_redacted_once_installed(stream_handler: io.StringIO) -> None:
    install_redaction(["later-added-secret-7"])
    logger = logging.getLogger("some.library.deep")
    logger.info("connecting with %s", "later-added-secret-7")
    logger.warning("url was https://u:later-added-secret-7@h/x")
    logged = stream_handler.getvalue()
    assert "later-added-secret-7" not in logged and logged.count(REDACTED) == 2


def test_the_http_client_is_quiet_unless_debugging() -> None:
    quiet_libraries(logging.INFO)
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert not logging.getLogger("telegram").isEnabledFor(logging.DEBUG)
    quiet_libraries(logging.DEBUG)
    assert logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert not logging.getLogger("httpcore").isEnabledFor(logging.INFO)
    quiet_libraries(logging.INFO)


def test_a_configured_process_logs_the_format_redacted_without_caller_lookups() -> None:
    """`configure_logging` in a process of its own (it changes logging's globals): the line
    format as before (asctime to the millisecond, level, logger, message), secrets still
    redacted, and no caller, thread or process looked up for a record."""
    script = textwrap.dedent(
        f"""
        import logging
        from bot.logging_setup import configure_logging
        configure_logging({{"INTAKE_TELEGRAM_TOKEN": {TOKEN!r}}})
        logging.getLogger("bot.channels.web.api").info("%s %s %d %.1fms", "POST", "/x", 200, 1.25)
        logging.getLogger("httpx").warning("GET https://api.telegram.org/bot{TOKEN}/getMe")
        record = logging.getLogger("x").makeRecord("x", logging.INFO, "f", 1, "m", (), None)
        print(record.threadName, record.processName, logging._srcfile)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    lines = done.stderr.splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO bot.channels.web.api: POST /x 200 1.2ms",
        lines[0],
    )
    assert lines[1].endswith(f"WARNING httpx: GET https://api.telegram.org/bot{REDACTED}/getMe")
    assert TOKEN not in done.stderr
    assert done.stdout.split() == ["None", "None", "None"]


def test_line_formatter_writes_the_time_as_the_standard_formatter_does() -> None:
    ours, standard = LineFormatter(), logging.Formatter(LOG_FORMAT)
    start = time.time()
    for created in (start, start + 0.001, start + 0.999, start + 1.0005, start + 86400.25):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == standard.format(record)
