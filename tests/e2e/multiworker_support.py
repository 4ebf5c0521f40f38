"""Helpers for the multi-process tests: a throwaway PostgreSQL database, real `python -m bot`
worker processes, and a client that walks the intake dialogue to a submitted report.

The workers are separate processes started exactly as an operator would start them, so the
tests see what production sees: no shared memory, only the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_URL = os.environ.get(
    "INTAKE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
SMALL_DIRECTORY = ROOT / "tests" / "fixtures" / "directory-small.csv"


# ---------------------------------------------------------------------- PostgreSQL


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def admin_connection(url: str = POSTGRES_URL) -> asyncpg.Connection:
    return await asyncio.wait_for(asyncpg.connect(asyncpg_dsn(url), timeout=3), timeout=5)


async def require_postgres() -> None:
    """Skip (with the reason) when the test PostgreSQL server does not answer."""
    try:
        connection = await admin_connection()
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {type(error).__name__}: {error}")
    await connection.close()


@contextlib.asynccontextmanager
async def fresh_database(prefix: str = "intake_mw") -> AsyncIterator[str]:
    """A new, empty database on the test server (its SQLAlchemy URL); dropped at the end,
    together with any session still connected to it."""
    await require_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await admin_connection()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await _drop_database(name)


async def _drop_database(name: str, attempts: int = 5) -> None:
    """FORCE ends the sessions still connected; a process that is still dying may connect
    again in between, so try a few times before failing the test."""
    for attempt in range(attempts):
        admin = await admin_connection()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except asyncpg.ObjectInUseError:
            if attempt == attempts - 1:
                raise
        finally:
            await admin.close()
        await asyncio.sleep(0.5)


# ---------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_env(database_url: str, port: int, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("INTAKE_") or key == "INTAKE_TEST_POSTGRES_URL"
    }
    env.update(
        INTAKE_DATABASE_URL=database_url,
        INTAKE_HOST="127.0.0.1",
        INTAKE_PORT=str(port),
        INTAKE_RATE_LIMIT_PER_MINUTE="100000",
        INTAKE_NEW_CONVERSATIONS_PER_MINUTE="100000",
        INTAKE_NEW_CONVERSATIONS_TOTAL_PER_MINUTE="100000",
        INTAKE_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    env.update(extra)
    return env


def run_cli(args: list[str], env: Mapping[str, str], timeout: float = 60) -> str:
    """Run `python -m bot ARGS` to completion; its output, or a failed assertion showing it."""
    done = subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"intake {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@dataclass
class Process:
    """A `python -m bot serve` process (its own process group, so children die with it)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signum)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye; in-flight requests see their connection drop."""
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGKILL)

    def reap(self, timeout: float = 10) -> int | None:
        """Kill whatever is left of the process group and collect the exit status."""
        if self.alive():
            self.signal_group(signal.SIGKILL)
        else:
            self.signal_group(signal.SIGKILL)  # orphaned grandchildren, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.popen.wait(timeout)
        return None


def start_serve(
    name: str, database_url: str, port: int, log_dir: Path, *extra_args: str, **env: str
) -> Process:
    log_path = log_dir / f"{name}.log"
    log_file = log_path.open("wb")
    popen = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", *extra_args],
        cwd=ROOT,
        env=worker_env(database_url, port, **env),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log_file.close()
    return Process(name, popen, log_path, port)


async def wait_ready(process: Process, session: aiohttp.ClientSession, within: float = 30) -> None:
    """Until /readyz answers 200 (the app is built and the database answers)."""
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        if not process.alive():
            raise AssertionError(f"{process.name} exited early:\n{process.output()}")
        try:
            async with session.get(process.base_url + "/readyz") as response:
                if response.status == 200:
                    return
                last = response.status
        except (aiohttp.ClientError, OSError) as error:
            last = error
        await asyncio.sleep(0.1)
    raise AssertionError(
        f"{process.name} not ready after {within} s ({last!r}):\n{process.output()}"
    )


SERVING = re.compile(r"Serving on \S+ \(pid (\d+)\)")


def serving_pids(output: str) -> list[int]:
    return [int(pid) for pid in SERVING.findall(output)]


# ---------------------------------------------------------------------- the dialogue


@dataclass(frozen=True)
class Plan:
    """How one simulated person answers: the same answers whichever worker asks."""

    experience: str  # "good" or "poor"
    service_type: str
    provider: str
    what_happened: str

    def answer(self, reply: dict[str, Any]) -> dict[str, str]:
        """The message to send after `reply` (a step id to an answer), by the step it asks."""
        step = reply["step"]
        choices = {c["id"] for m in reply["messages"] for c in m.get("choices", [])}
        if step == "provider":
            if choices:  # directory matches offered as choices: none of them
                return {"choice": "none" if "none" in choices else sorted(choices)[-1]}
            return {"text": self.provider}
        fixed = {
            "welcome": {"choice": "start"},
            "experience": {"choice": self.experience},
            "service_type": {"choice": self.service_type},
            "relationship": {"choice": "self"},
            "when": {"choice": "skip"},
            "service_part": {"choice": "skip"},
            "what_happened": {"text": self.what_happened},
            "share_with_service": {"choice": "yes"},
            "risk": {"choice": "no"},
            "authorities": {"choice": "neither"},
            "complaint": {"choice": "not_yet"},
            "complaint_info": {"choice": "continue"},
            "mha": {"choice": "no"},
            "contact": {"choice": "no"},
            "referral": {"choice": "no"},
            "summary": {"choice": "submit"},
        }
        if step not in fixed:
            raise AssertionError(f"the script has no answer for step {step!r}: {reply}")
        answer = fixed[step]
        if "choice" in answer and choices and answer["choice"] not in choices:
            raise AssertionError(
                f"{answer['choice']!r} is not offered at {step!r}: {sorted(choices)}"
            )
        return answer


SERVICE_TYPES = ("care_home", "hospital", "gp", "mental_health", "dentist", "home_care")


def plan_for(index: int) -> Plan:
    return Plan(
        experience="poor" if index % 2 else "good",
        service_type=SERVICE_TYPES[index % len(SERVICE_TYPES)],
        provider=f"Qwxz Nowhere Service number {index}",
        what_happened=f"Conversation {index}: the staff were kind and explained everything.",
    )


@dataclass
class Sent:
    """One message of a conversation as the client sent it, and the reply it was given."""

    message_id: str
    body: dict[str, str]
    step_before: str
    reply: dict[str, Any] | None = None
    attempts: int = 0
    duplicated: bool = False


@dataclass
class Outcomes:
    """Every HTTP answer, by worker, so failures can be pinned on the killed one."""

    statuses: dict[str, dict[int, int]] = field(default_factory=dict)
    #: (worker, kind, detail, monotonic time) of connection failures and 5xx.
    failures: list[tuple[str, str, str, float]] = field(default_factory=list)

    def status(self, worker: str, status: int) -> None:
        per = self.statuses.setdefault(worker, {})
        per[status] = per.get(status, 0) + 1
