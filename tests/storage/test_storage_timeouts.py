"""A serving engine bounds every wait on PostgreSQL to seconds; a migration engine does not."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import text

from storage.engine import REQUEST_TIMEOUTS, create_engine
from tests.storage.conftest import BACKENDS

pytestmark = pytest.mark.postgres
SETTINGS = (
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "tcp_keepalives_idle",
)


@pytest.mark.parametrize("database_url", [BACKENDS[1]], indirect=True)
async def test_serving_engine_sets_timeouts_and_keepalives(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            shown = {
                name: (await connection.execute(text(f"SHOW {name}"))).scalar_one()
                for name in SETTINGS
            }
            raw = await connection.get_raw_connection()
            sock = raw.driver_connection._transport.get_extra_info("socket")  # type: ignore[union-attr]
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == (
                REQUEST_TIMEOUTS.keepalive_idle
            )
    finally:
        await engine.dispose()
    assert shown == {
        "statement_timeout": "3s",
        "lock_timeout": "2s",
        "idle_in_transaction_session_timeout": "5s",
        "tcp_keepalives_idle": "10",
    }


@pytest.mark.parametrize("database_url", [BACKENDS[1]], indirect=True)
async def test_migration_engine_leaves_the_server_defaults(database_url: str) -> None:
    engine = create_engine(database_url, timeouts=None)
    try:
        async with engine.connect() as connection:
            value = (await connection.execute(text("SHOW statement_timeout"))).scalar_one()
    finally:
        await engine.dispose()
    assert value == "0"
