"""Slow and vanishing clients over a raw socket: headers and bodies that never finish arriving
are cut off, and a client that hangs up is not a server error."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web

from bot.app import build_app
from bot.channels.web import api as web_channel
from bot.channels.web import http as web_http
from bot.config import Settings


@pytest.fixture
async def slow_limits_server(
    server_settings: Settings, shared_catalogs: None, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, int]]:
    """The app served with the production server options, its timeouts made short."""
    monkeypatch.setattr(web_http, "BODY_READ_TIMEOUT_SECONDS", 0.3)
    options = {**web_channel.SERVER_OPTIONS, "keepalive_timeout": 0.3}
    runner = web.AppRunner(
        build_app(replace(server_settings)), access_log=None, handle_signals=False, **options
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield host, port
    await runner.cleanup()


async def test_headers_that_never_finish_are_cut_off(slow_limits_server: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*slow_limits_server)
    writer.write(b"POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\n")  # and no more
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), timeout=10) == b""  # closed by the server
    writer.close()


async def test_a_body_that_never_finishes_is_408(slow_limits_server: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*slow_limits_server)
    writer.write(
        b"POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"lo'
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    body = await asyncio.wait_for(reader.readexactly(length), timeout=10)
    writer.close()
    assert head.startswith(b"HTTP/1.1 408"), head
    assert json.loads(body)["error"]["code"] == "request_timeout"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.logged_request = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if record.name == "bot.channels.web.api" and record.getMessage().startswith("POST "):
            self.logged_request.set()


async def test_a_client_that_hangs_up_is_not_a_server_error(
    slow_limits_server: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_http, "BODY_READ_TIMEOUT_SECONDS", 30)
    records = _Records()
    root = logging.getLogger()
    root.addHandler(records)
    previous = root.level
    root.setLevel(logging.DEBUG)
    try:
        _reader, writer = await asyncio.open_connection(*slow_limits_server)
        writer.write(
            b"POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"lo'
        )
        await writer.drain()
        await asyncio.sleep(0)  # let the server start reading the body
        writer.transport.abort()  # the person closed the tab
        await asyncio.wait_for(records.logged_request.wait(), timeout=10)
    finally:
        root.removeHandler(records)
        root.setLevel(previous)
    errors: list[Any] = [r for r in records.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    access = [r.getMessage() for r in records.records if r.getMessage().startswith("POST ")]
    assert access and " 500 " not in access[0]


async def test_a_malformed_request_is_refused_without_an_error_log(
    slow_limits_server: tuple[str, int],
) -> None:
    records = _Records()
    server_log = logging.getLogger("aiohttp.server")
    server_log.addHandler(records)
    try:
        reader, writer = await asyncio.open_connection(*slow_limits_server)
        writer.write(
            b"GET /api/v1/ui-text HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \x01\r\n\r\n"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        writer.close()
    finally:
        server_log.removeHandler(records)
    assert head.split(b"\r\n", 1)[0].split()[1] == b"400", head
    assert records.records, "aiohttp logged nothing: the filter was not exercised"
    assert all(r.levelno == logging.INFO for r in records.records)
    assert all("127.0.0.1" not in r.getMessage() and not r.exc_info for r in records.records)
