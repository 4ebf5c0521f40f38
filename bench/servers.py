"""Databases and server processes for the HTTP benchmarks.

Each server runs in its own process, the load generator in another; this process only
orchestrates. SQLite files live in a temporary directory; PostgreSQL gets a fresh database
per server (bench_<pid>_<n>), dropped afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import write_batches
from bench.common import DEFAULT_POSTGRES_URL, PYTHON, ROOT, cpu_seconds, free_port, log, spawn
from bench.loadgen import SECRET
from bench.speed import SpeedProbe
from bench.steal import busy_share, read_cpu_times, stolen_share

_databases = itertools.count(1)
#: Far above any rate a benchmark reaches: every request comes from 127.0.0.1.
NO_RATE_LIMIT = "1000000000"
#: What an `intake serve` with a default PostgreSQL (max_connections 100) to itself is told
#: it may hold (docs/deployment.md): one worker 50 + 8 connections, four 12 + 8 each.
BENCH_DATABASE_CONNECTIONS = "80"


def postgres_url() -> str:
    return os.environ.get("INTAKE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def postgres_available() -> str | None:
    """None when PostgreSQL answers, else the reason it cannot be used."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return "asyncpg not installed"

    async def probe() -> None:
        conn = await _admin_connect()
        await conn.close()

    error: Exception | None = None
    for attempt in range(5):  # a shared server can be briefly out of connections
        try:
            asyncio.run(asyncio.wait_for(probe(), 5))
            return None
        except Exception as exc:
            error = exc
            time.sleep(1 + attempt)
    return f"no PostgreSQL at {postgres_url().split('@')[-1]} ({type(error).__name__})"


async def connect(url: str) -> Any:
    """A bare asyncpg connection to the PostgreSQL database at SQLAlchemy URL `url`."""
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password,
        database=parsed.database or "postgres",
        timeout=5,
    )


async def _admin_connect() -> Any:
    return await connect(postgres_url())


@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh, empty database of `kind` ("sqlite" or "postgres"); its URL for the block."""
    if kind == "sqlite":
        directory = tempfile.mkdtemp(prefix="intake-bench-")
        try:
            yield f"sqlite+aiosqlite:///{directory}/bench.sqlite3"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    from sqlalchemy.engine import make_url

    name = f"bench_{os.getpid()}_{next(_databases)}"

    async def admin(sql: str) -> None:
        conn = await _admin_connect()
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url()).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def app_env(url: str, port: int, **extra: str) -> dict[str, str]:
    return {
        "INTAKE_DATABASE_URL": url,
        "INTAKE_HOST": "127.0.0.1",
        "INTAKE_PORT": str(port),
        "INTAKE_RATE_LIMIT_PER_MINUTE": NO_RATE_LIMIT,
        # Every conversation comes from 127.0.0.1 and they start at hundreds a second.
        "INTAKE_NEW_CONVERSATIONS_PER_MINUTE": NO_RATE_LIMIT,
        "INTAKE_NEW_CONVERSATIONS_TOTAL_PER_MINUTE": NO_RATE_LIMIT,
        # Each server has its database to itself (docs/deployment.md, "Connections"); the
        # bench's other servers on the same PostgreSQL hold 10 (the raw ceiling) and 15.
        "INTAKE_DATABASE_CONNECTIONS": BENCH_DATABASE_CONNECTIONS,
        "PYTHONPATH": str(ROOT),
        **extra,
    }


@contextlib.contextmanager
def app_server(
    url: str, *, workers: int = 1, telegram_api: str | None = None, log_dir: Path | None = None
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`python -m bot serve` (the `intake serve` command), as deployed: INFO logging on."""
    port = free_port()
    extra: dict[str, str] = {}
    if telegram_api:
        extra = {
            "INTAKE_TELEGRAM_TOKEN": _token(),
            "INTAKE_TELEGRAM_WEBHOOK_SECRET": SECRET,
            "INTAKE_TELEGRAM_API_BASE_URL": telegram_api,
            "INTAKE_TELEGRAM_MODE": "webhook",
            "INTAKE_TELEGRAM_PUBLIC_URL": f"http://127.0.0.1:{port}",
        }
    args = [PYTHON, "-m", "bot", "serve", "--workers", str(workers)]
    log_path = (log_dir or Path(tempfile.gettempdir())) / f"intake-bench-server-{port}.log"
    with spawn(args, app_env(url, port, **extra), port=port, log_path=log_path) as proc:
        yield port, proc


def _token() -> str:
    from bench.updates import BOT_TOKEN

    return BOT_TOKEN


@contextlib.contextmanager
def ceiling_server(
    url: str, *, workers: int = 1, driver: str = "raw"
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    args = [PYTHON, "-m", "bench.ceiling_server", "--port", str(port), "--workers", str(workers)]
    args += ["--driver", driver]
    log_path = Path(tempfile.gettempdir()) / f"intake-bench-ceiling-{port}.log"
    with spawn(args, app_env(url, port), port=port, log_path=log_path) as proc:
        yield port, proc


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (workers), from /proc."""
    total = 0.0
    with contextlib.suppress(OSError):
        total += cpu_seconds(pid)
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            total += process_tree_cpu(int(child))
    return total


def database_cpu() -> dict[int, float]:
    """CPU seconds so far of every PostgreSQL process on this machine (the server, its
    backends, its background writers), by pid. On a quiet machine that is the benchmark's
    database work; a backend that exits between two readings is missed."""
    seen: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    seen[int(entry.name)] = cpu_seconds(int(entry.name))
    return seen


def database_cpu_since(before: dict[int, float]) -> float:
    """PostgreSQL's CPU seconds since `before` (`database_cpu()`), new backends included."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in database_cpu().items())


def load(
    mode: str,
    port: int,
    *,
    concurrency: int = 50,
    rate: float = 0.0,
    duration: float = 5.0,
    warmup: float = 1.0,
    server_pid: int | None = None,
    count: int = 0,
    turns_per_conversation: int = 0,
    start: str = "staggered",
) -> dict[str, Any]:
    """Run the load generator in its own process; its JSON result, plus the server's CPU and,
    for the app, its write batches meanwhile (`bench.write_batches`: "write_batches").
    `start`: the open loop's (`bench.loadgen`, `--start`)."""
    args = [
        PYTHON,
        "-m",
        "bench.loadgen",
        mode,
        "--port",
        str(port),
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
    ]
    if rate:
        args += ["--rate", f"{rate:.1f}", "--start", start]
    if count:
        args += ["--count", str(count), "--turns-per-conversation", str(turns_per_conversation)]
    batches_before = write_batches.read(port) if mode != "ceiling" else None
    cpu_before = process_tree_cpu(server_pid) if server_pid else 0.0
    database_before = database_cpu()
    machine_before = read_cpu_times()
    # How fast the machine ran a fixed loop meanwhile (bench/speed.py): a latency row reads it
    # against its saturated run's.
    with SpeedProbe() as speed:
        done = subprocess.run(
            args,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=duration + warmup + 180,
        )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr.strip()[-600:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if server_pid:
        result["server_cpu_s"] = process_tree_cpu(server_pid) - cpu_before
        result["server_cpu_share"] = result["server_cpu_s"] / result["wall_s"]
    result["database_cpu_s"] = database_cpu_since(database_before)
    result["database_cpu_share"] = result["database_cpu_s"] / result["wall_s"]
    # What the host took away meanwhile (bench/steal.py): a latency row's note reads it.
    machine_after = read_cpu_times()
    result["steal_share"] = stolen_share(machine_before, machine_after)
    # And how busy the CPUs were that the server shares with its database and the generator.
    result["busy_share"] = busy_share(machine_before, machine_after)
    result["speed"] = speed.summary()
    if batches_before is not None and (batches_after := write_batches.read(port)) is not None:
        result["write_batches"] = batches_after - batches_before
    if result["errors"]:
        log(
            f"{mode} c={concurrency} rate={rate}: {result['errors']} errors, e.g. {result['first_errors'][:1]}"
        )
    return result
