"""Fixtures for delivery tests: the storage backends, and a real SMTP server with STARTTLS."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.smtp import SmtpServer, make_certificate
from tests.storage.conftest import clock, database_url, storage

__all__ = ["clock", "database_url", "storage"]


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the STARTTLS test server")
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def smtp(
    unused_tcp_port: int, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SmtpServer]:
    # The app verifies the server's certificate as in production; here it is ours.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    server = SmtpServer(unused_tcp_port, certificate)
    server.start()
    yield server
    server.stop()
