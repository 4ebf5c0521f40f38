"""An open loop on PostgreSQL starts after a checkpoint and says what WAL it wrote
(`bench.wal`): the checkpoint recycles the WAL files the runs before it wrote, so that the run
does not wait for new ones to be created, as a service in steady state does not."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from bench import wal
from bench.servers import connect
from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.postgres


async def _fetch(sql: str) -> Any:
    import asyncpg

    try:
        connection = await asyncio.wait_for(connect(POSTGRES_URL), timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {error!r}")
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


def test_a_run_starts_after_a_checkpoint_and_its_wal_is_measured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INTAKE_BENCH_POSTGRES_URL", POSTGRES_URL)
    checkpoints = "SELECT checkpoints_req FROM pg_stat_bgwriter"
    before = asyncio.run(_fetch(checkpoints))
    seen: list[int] = []
    table = f"bench_wal_probe_{uuid.uuid4().hex[:12]}"

    def run() -> dict[str, Any]:
        seen.append(asyncio.run(_fetch(checkpoints)))
        # About 2 MB of WAL: a table of 2,000 rows of 1,000 characters, then dropped.
        asyncio.run(
            _fetch(
                f"CREATE TABLE {table} AS SELECT repeat('x', 1000) AS line "
                "FROM generate_series(1, 2000)"
            )
        )
        asyncio.run(_fetch(f"DROP TABLE {table}"))
        return {"answered": 100, "p99_ms": 1.0}

    result = wal.after_checkpoint(run)
    assert seen[0] > before  # the checkpoint came first
    assert result["answered"] == 100 and result["p99_ms"] == 1.0
    assert result["wal_bytes"] >= 2_000 * 1_000
    assert isinstance(result["wal_files_added"], int)
    text = wal.note(result)
    assert f"WAL {result['wal_bytes'] / 100 / 1024:.1f} KiB a turn" in text
    assert f"{result['wal_files_added']} WAL files created" in text


def test_a_run_not_measured_has_no_wal_note() -> None:
    assert wal.note({"answered": 10}) == ""
