"""Logging for every process: one format, quiet libraries, and no secret in any line.

Secrets reach log lines by routes nobody wrote on purpose: the HTTP client logs every Bot API
URL (`.../bot<token>/sendMessage`), a driver's exception quotes a connection string, a library
logs a request at DEBUG. So, besides keeping chatty loggers quiet, every record is redacted
when it is created: each configured secret value is replaced in its message, its arguments,
its traceback and its stack, whichever logger it comes from and whichever handler prints it.

Which values are secret is decided by name, so a setting added later is covered without
touching this file: every `INTAKE_*` variable whose name ends in TOKEN, SECRET, KEY or
PASSWORD, and the password inside every `INTAKE_*_URL` (database, SMTP, ...).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit

REDACTED = "[redacted]"
_SECRET_NAME = re.compile(r"INTAKE_\w*(TOKEN|SECRET|KEY|PASSWORD)")
_URL_NAME = re.compile(r"INTAKE_\w*URL")

#: Loggers whose lines carry what people typed (SQL parameters), secrets (request URLs) or
#: nothing an operator needs, at the levels below WARNING.
_QUIET = (
    "aiosqlite",
    "sqlalchemy.engine",
    "asyncpg",
    "transitions",
    "alembic.runtime.plugins",
    # The HTTP client under python-telegram-bot logs every request's URL at INFO, and the Bot
    # API puts the token in the URL; its transport logs connection details at DEBUG.
    "httpcore",
    # python-telegram-bot logs each call's parameters at DEBUG: the texts we send.
    "telegram",
)


def url_password(url: str) -> str | None:
    """The password in a URL such as postgresql+asyncpg://user:password@host/db."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return password or None


def secrets_in_environment(environ: Mapping[str, str]) -> set[str]:
    found: set[str] = set()
    for name, value in environ.items():
        value = value.strip()
        if not value:
            continue
        if _SECRET_NAME.fullmatch(name):
            found.add(value)
        elif _URL_NAME.fullmatch(name):
            password = url_password(value)
            if password:
                found.add(password)
    return found


def _spellings(secret: str) -> set[str]:
    """The value as configured, percent-decoded (a URL's password) and percent-encoded (a
    token in a request URL, a secret in a query string)."""
    return {secret, unquote(secret), quote(secret, safe=""), quote(secret, safe=":")}


class SecretRedactor(logging.Filter):
    """Replaces every known secret in a record; never drops a record."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    def add(self, secrets: Iterable[str | None]) -> None:
        spelled = {s for secret in secrets if secret for s in _spellings(secret) if s}
        with self._lock:
            # Longest first, so a secret containing another is replaced whole.
            self._secrets = tuple(sorted(spelled | set(self._secrets), key=lambda s: (-len(s), s)))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is, as text
            message = f"{record.msg} {record.args!r}"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            redacted = self.redact(record.exc_text)
            if redacted != record.exc_text:
                # Formatters print exc_text; without exc_info none can format the raw
                # exception (and its secrets) again. A traceback without a secret keeps its
                # exception, so filters further on can still tell what it was.
                record.exc_text, record.exc_info = redacted, None
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


#: The process's one redactor; `install_redaction` hooks it into record creation once.
REDACTOR = SecretRedactor()
_installed = False
_install_lock = threading.Lock()


def install_redaction(secrets: Iterable[str | None]) -> None:
    """Redact `secrets` (added to those already known) from every log record from now on.

    Applied where records are made (the LogRecord factory) rather than on a logger or a
    handler: a filter on a logger misses its children's records, and one on a handler misses
    handlers added later (a test's capture, an operator's extra handler)."""
    global _installed
    REDACTOR.add(secrets)
    with _install_lock:
        if _installed:
            return
        make_record = logging.getLogRecordFactory()

        def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make_record(*args, **kwargs)
            REDACTOR.filter(record)
            return record

        logging.setLogRecordFactory(redacting_factory)
        _installed = True


def quiet_libraries(level: int) -> None:
    """Chatty libraries log at WARNING and above only. At DEBUG the HTTP client's request
    lines are let through (redacted like everything else) for whoever is debugging."""
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(
        logging.DEBUG if level <= logging.DEBUG else logging.WARNING
    )


#: Every line: when, how bad, where from, what. Nothing else is looked up for a record (see
#: `skip_unused_record_fields`).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LineFormatter(logging.Formatter):
    """`logging.Formatter` with the same `asctime` text, made once a second instead of on every
    line: `time.localtime` and `strftime` were a good part of the cost of a line, and the web
    channel writes one for every request."""

    def __init__(self, fmt: str = LOG_FORMAT) -> None:
        super().__init__(fmt)
        # (second, its text) as one tuple, so a thread never pairs one second with another's text.
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second, text = self._second
        if second != int(record.created):
            second = int(record.created)
            text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(record.created))
            self._second = (second, text)
        return f"{text},{int(record.msecs):03d}"


def skip_unused_record_fields() -> None:
    """Python's own optimisation (logging HOWTO, "Optimization"): every record otherwise walks
    the stack for its caller's file, line and function and looks up the thread and process
    names, none of which `LOG_FORMAT` prints. (So `stack_info=True` prints no stack either:
    nothing here asks for one; a traceback, `exc_info`, is unaffected.)"""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if sys.version_info >= (3, 12):
        logging.logAsyncioTasks = False


def configure_logging(environ: Mapping[str, str] | None = None) -> None:
    """Once per process (workers are spawned, so each calls this)."""
    environ = os.environ if environ is None else environ
    install_redaction(secrets_in_environment(environ))
    level_name = environ.get("INTAKE_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    skip_unused_record_fields()
    handler = logging.StreamHandler()
    handler.setFormatter(LineFormatter())
    logging.basicConfig(level=level_name, handlers=[handler])
    quiet_libraries(logging.getLogger().getEffectiveLevel())
