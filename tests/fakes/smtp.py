"""A real SMTP server on loopback (aiosmtpd) that records what it accepts and can be told to
refuse for a while (a 4xx answer to DATA) or be stopped (connection refused)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER, PASSWORD = "intake", "s3cret-for-tests"


@dataclass
class Recorder:
    received: list[EmailMessage] = field(default_factory=list)
    #: Answer the next N DATA commands with 451 (a temporary failure).
    fail_next: int = 0
    attempts: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)
    #: Set (from the server's thread) whenever something happened; the test's loop waits on it.
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    loop: asyncio.AbstractEventLoop | None = None

    def _changed(self) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.changed.set)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.attempts += 1
            if self.fail_next > 0:
                self.fail_next -= 1
                self._changed()
                return "451 4.3.0 Try again later"
            parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            self.received.append(parsed)
        self._changed()
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.received if m["To"] == address]

    async def wait_until(self, ready: Any, limit: float = 30.0) -> None:
        """Until `ready()` holds, woken by each SMTP transaction; fails after `limit` s."""
        async with asyncio.timeout(limit):
            while True:
                self.changed.clear()
                with self.lock:
                    if ready():
                        return
                await self.changed.wait()

    async def wait_for(self, count: int) -> list[EmailMessage]:
        await self.wait_until(lambda: len(self.received) >= count)
        with self.lock:
            return list(self.received)


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok)


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl), so STARTTLS is real in tests."""
    cert, key = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class _TrackingController(Controller):
    """Remembers its sessions, so that stopping can close connections still open (a client
    in the middle of a transaction) instead of leaving their sockets to the collector."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: list[Any] = []

    def factory(self) -> Any:
        session = super().factory()
        self.sessions.append(session)
        return session

    def close_sessions(self) -> None:
        async def close_all() -> None:
            self.server.close()  # no new connections from here on
            for session in self.sessions:
                for transport in (session.transport, session._original_transport):
                    if transport is not None:
                        transport.abort()
            # connection_lost (which closes the socket) runs on the loop's next turns.
            for _ in range(3):
                await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(timeout=10)


class SmtpServer:
    """Start/stop on the same port, so a test can make the server go away and come back.

    It offers STARTTLS with `certificate` and then requires it, and AUTH (LOGIN/PLAIN)."""

    def __init__(self, port: int, certificate: tuple[Path, Path]) -> None:
        self.port = port
        self.recorder = Recorder()
        self.require_auth = True
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(*certificate)
        self._controller: _TrackingController | None = None

    @property
    def url(self) -> str:
        credentials = f"{USER}:{PASSWORD}@" if self.require_auth else ""
        return f"smtp://{credentials}127.0.0.1:{self.port}"

    def start(self) -> None:
        self.recorder.loop = asyncio.get_running_loop()
        self._controller = _TrackingController(
            self.recorder,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=_authenticator,
            auth_required=True,
            tls_context=self.tls,
            require_starttls=True,
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.close_sessions()
            self._controller.stop()
            self._controller = None
