"""Alembic environment, for sqlite+aiosqlite and postgresql+asyncpg alike.

`storage.migrate.upgrade` hands in a connection that is already inside a locked transaction
(config.attributes["connection"]). Run from the `alembic` command instead, the URL comes from
`-x url=...` or INTAKE_DATABASE_URL and the same locked transaction is set up here.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from storage.migrate import run_locked
from storage.models import metadata

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    # Inside the caller's transaction, Alembic does not open one of its own: the whole upgrade
    # commits (or rolls back) as one, together with the advisory lock.
    with context.begin_transaction():
        context.run_migrations()


def database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(
        "INTAKE_DATABASE_URL"
    )
    if not url:
        raise SystemExit("set INTAKE_DATABASE_URL or pass -x url=...")
    return url


def run_offline() -> None:
    context.configure(url=database_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
    else:
        asyncio.run(run_locked(database_url(), run_migrations))


if context.is_offline_mode():
    run_offline()
else:
    run_online()
