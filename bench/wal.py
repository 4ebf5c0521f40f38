"""PostgreSQL's write-ahead log around a latency run: a checkpoint first, then what was written.

Every commit waits for its WAL to reach the disk, in 16 MB files. A server in steady state
recycles the files its last checkpoint no longer needs as the next ones, so writing on is
cheap. A file that has to be created instead is first filled with zeros and synced (16 MB,
`wal_init_zero`), and every commit waits behind that: about 50 ms on this machine, all the
turns in flight at once (BENCHMARKS.md). The bench makes that happen more than a service
would: each server's database is dropped at its end, which forces a checkpoint that keeps few
files, and then a few seconds at thousands of turns a second write hundreds of megabytes.
So an open loop on PostgreSQL starts right after a CHECKPOINT, which recycles what the
saturated runs before it wrote (a service does the same with `min_wal_size` sized for its
bursts: docs/deployment.md), and its note says how much WAL a turn wrote and how many files
were created meanwhile, so that a tail from them shows.

The WAL and its files are the whole server's: on a quiet machine, the run's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bench.servers import connect, postgres_url

#: How many WAL files there are (pg_ls_waldir: a superuser's or pg_monitor's, as the bench's
#: PostgreSQL user is).
_FILES = "(SELECT count(*) FROM pg_ls_waldir())"


async def position(connection: Any) -> Any:
    """The server's WAL position now, on an asyncpg `connection` (any database of it)."""
    return await connection.fetchval("SELECT pg_current_wal_lsn()")


async def written_since(connection: Any, lsn: Any) -> float:
    """The WAL bytes the whole server has written since `lsn` (`position`)."""
    return float(await connection.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)", lsn))


async def _checkpoint() -> tuple[Any, int]:
    """CHECKPOINT, then the WAL position and the WAL files after it."""
    connection = await connect(postgres_url())
    try:
        await connection.execute("CHECKPOINT")
        return await position(connection), int(await connection.fetchval(f"SELECT {_FILES}"))
    finally:
        await connection.close()


async def _written_since(lsn: Any) -> tuple[float, int]:
    """The WAL bytes written since `lsn`, and the WAL files now."""
    connection = await connect(postgres_url())
    try:
        files = int(await connection.fetchval(f"SELECT {_FILES}"))
        return await written_since(connection, lsn), files
    finally:
        await connection.close()


def after_checkpoint(measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`measure()`'s result (a load run's), run right after a CHECKPOINT, with the WAL written
    meanwhile: "wal_bytes", and "wal_files_added" (files created, less any removed)."""
    lsn, files = asyncio.run(_checkpoint())
    result = measure()
    written, files_after = asyncio.run(_written_since(lsn))
    return {**result, "wal_bytes": written, "wal_files_added": files_after - files}


def note(result: dict[str, Any]) -> str:
    """A row's words on its run's WAL ("" for a run not measured by `after_checkpoint`)."""
    if "wal_bytes" not in result:
        return ""
    per_turn = result["wal_bytes"] / max(result["answered"], 1)
    return (
        f"; WAL {per_turn / 1024:.1f} KiB a turn (warm-up included), "
        f"{result['wal_files_added']} WAL files created (the run started after a CHECKPOINT: "
        f"bench/wal.py)"
    )
