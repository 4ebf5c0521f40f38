"""One place that turns every database failure into `bot.ports.StorageError`.

The web layer answers 503 to a StorageError and the turn may be retried; anything else is a bug
and should crash loudly. So only failures of the database or of the way to it are translated:
driver errors, pool timeouts, refused or dropped connections.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc

from bot.ports import DuplicateError, StorageError

try:  # asyncpg is optional at runtime (SQLite-only installs)
    import asyncpg

    _DRIVER_ERRORS: tuple[type[BaseException], ...] = (
        sqlite3.Error,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        # What a statement on the driver's own connection (storage.turns) meets when the
        # server dropped the session under it ("another operation is in progress").
        asyncpg.InternalClientError,
    )
except ImportError:  # pragma: no cover
    _DRIVER_ERRORS = (sqlite3.Error,)

_TRANSLATED: tuple[type[BaseException], ...] = (
    sa_exc.DBAPIError,  # OperationalError, InterfaceError, ProgrammingError, ...
    sa_exc.TimeoutError,  # the pool had no connection to give
    sa_exc.DisconnectionError,
    sa_exc.PendingRollbackError,
    # A driver error re-raised by SQLAlchemy's asyncpg adapter without a DBAPIError around
    # it: a pool checkout for the driver's own connection (`engine.raw_connection()`, as
    # storage.db does) skips that wrapping, so a server that refuses the connection
    # ("too many clients already") arrives as this, and was answered 500 instead of 503.
    sa_exc.EmulatedDBAPIException,
    OSError,  # ConnectionRefusedError, TimeoutError (= asyncio.TimeoutError), socket errors
    *_DRIVER_ERRORS,
)

_UNIQUE_SQLSTATE = "23505"
_SQLITE_UNIQUE = ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")


def is_unique_violation(error: sa_exc.IntegrityError) -> bool:
    orig = error.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code == _UNIQUE_SQLSTATE:
        return True
    if getattr(orig, "sqlite_errorname", None) in _SQLITE_UNIQUE:
        return True
    return "UNIQUE constraint failed" in str(orig)


#: SQLSTATE classes of a statement whose data the database refused (22: data exception, e.g.
#: NUL in text on PostgreSQL; 23: integrity constraint other than unique). Running it again
#: refuses it again: it is a bug, not an unavailable database, so it is not a StorageError
#: (which callers retry: the Telegram webhook would be redelivered forever).
_REFUSED_DATA_CLASSES = ("22", "23")


def _sqlstate(error: BaseException) -> str | None:
    for candidate in (error, getattr(error, "orig", None), error.__cause__):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def translate(error: BaseException) -> StorageError | None:
    """The StorageError to raise instead of `error`, or None if it is not a database failure."""
    if isinstance(error, StorageError):
        return error
    if isinstance(error, sa_exc.IntegrityError) and is_unique_violation(error):
        return DuplicateError(str(error.orig))
    code = _sqlstate(error)
    if code == _UNIQUE_SQLSTATE or getattr(error, "sqlite_errorname", None) in _SQLITE_UNIQUE:
        # From a driver directly (the turn's statements on the driver's connection).
        return DuplicateError(str(error))
    if code is not None and code[:2] in _REFUSED_DATA_CLASSES:
        return None
    if isinstance(error, sa_exc.IntegrityError):
        return StorageError(f"integrity error: {error.orig}")
    if isinstance(error, _TRANSLATED):
        return StorageError(f"database unavailable: {type(error).__name__}: {error}")
    return None


@contextmanager
def storage_errors() -> Iterator[None]:
    """Raise StorageError (chained to the cause) for any database failure inside the block."""
    try:
        yield
    except StorageError:
        raise
    except Exception as error:
        translated = translate(error)
        if translated is None:
            raise
        raise translated from error
