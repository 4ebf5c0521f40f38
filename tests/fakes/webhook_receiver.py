"""A receiver of signed webhooks on loopback: records each request, can answer 503 for a
while, and checks signatures with the shared secret as a real receiver would."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.outbox.webhook import verify

KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(KEY).decode()


@dataclass
class Delivered:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def signed_by(self, key: bytes) -> bool:
        return verify(
            key,
            self.headers["webhook-id"],
            self.headers["webhook-timestamp"],
            self.body,
            self.headers["webhook-signature"],
        )


@dataclass
class WebhookReceiver:
    received: list[Delivered] = field(default_factory=list)
    fail_next: int = 0
    #: The requests answered 503 (a retry must repeat their webhook-id).
    refused: list[Delivered] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    base_url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._receive)
        return app

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.changed.set()
        headers = {k.lower(): v for k, v in request.headers.items()}
        if self.fail_next > 0:
            self.fail_next -= 1
            self.refused.append(Delivered(request.path, headers, body))
            return web.Response(status=503)
        self.received.append(Delivered(request.path, headers, body))
        return web.Response(status=204)

    def at(self, path: str) -> list[Delivered]:
        return [d for d in self.received if d.path == path]

    async def until(self, ready: Any, limit: float = 30.0) -> None:
        async with asyncio.timeout(limit):
            while not ready():
                self.changed.clear()
                await self.changed.wait()


async def start_receiver() -> tuple[WebhookReceiver, web.AppRunner]:
    receiver = WebhookReceiver()
    runner = web.AppRunner(receiver.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    receiver.base_url = f"http://{host}:{port}"
    return receiver, runner
