"""The one-at-a-time comparison of Telegram with web (`bench.loadgen`'s `interleaved`): a web
conversation and a Telegram chat take turns on one server, one request in flight, each
turn's latency counted under its own channel. Measured in two runs seconds apart instead, the
machine's speed moved between them and one pair's ratio went from 0.89x to 1.86x
(BENCHMARKS.md). Driven here against a small web chat API and webhook on loopback."""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web

from bench import loadgen
from tests.fakes.loopback import serving
from tests.test_bench_open_loop import ChatApi, _open_loop

#: The webhook's answer takes this long: its turns' latency is at least that.
WEBHOOK_SECONDS = 0.05


class Server:
    """The chat API and a webhook, recording which channel each request came on and how many
    were in flight at once; the first `failing_updates` updates are answered 503."""

    def __init__(self, failing_updates: int = 0) -> None:
        self.failing_updates = failing_updates
        self.chat = ChatApi()
        self.channels: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v1/conversations", self._web(self.chat.create))
        app.router.add_post("/api/v1/conversations/{id}/messages", self._web(self.chat.message))
        app.router.add_post("/telegram/webhook", self.webhook)
        return app

    def _enter(self, channel: str) -> None:
        self.channels.append(channel)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def _web(self, handler: web.RequestHandler) -> web.RequestHandler:
        async def counted(request: web.Request) -> web.StreamResponse:
            self._enter("web")
            try:
                return await handler(request)
            finally:
                self.in_flight -= 1

        return counted

    async def webhook(self, request: web.Request) -> web.Response:
        self._enter("telegram")
        try:
            assert request.headers["X-Telegram-Bot-Api-Secret-Token"] == loadgen.SECRET
            assert "update_id" in await request.json()
            if self.failing_updates:
                self.failing_updates -= 1
                return web.json_response({"ok": False}, status=503)
            await asyncio.sleep(WEBHOOK_SECONDS)
            return web.json_response({"ok": True})
        finally:
            self.in_flight -= 1


def _interleaved(port: int, *, duration: float, warmup: float) -> argparse.Namespace:
    """One web conversation and one chat in turn, a closed loop."""
    args = _open_loop(port, "staggered")
    args.mode, args.concurrency, args.rate = "interleaved", 1, 0.0
    args.duration, args.warmup = duration, warmup
    return args


async def test_web_and_telegram_take_turns_and_are_measured_apart() -> None:
    server = Server()
    async with serving(server.app()) as port:
        result = await loadgen.run(_interleaved(port, duration=1.0, warmup=0.1))

    assert result["errors"] == 0, result["first_errors"]
    # One request in flight, web first, then each channel in turn.
    assert server.most_in_flight == 1
    assert server.channels[:4] == ["web", "telegram", "web", "telegram"]
    assert all(a != b for a, b in zip(server.channels, server.channels[1:], strict=False))
    web_turns, telegram = result["channels"]["web"], result["channels"]["telegram"]
    assert abs(web_turns["turns"] - telegram["turns"]) <= 1
    assert web_turns["turns"] + telegram["turns"] == result["turns"] > 10
    # Each turn's latency under its own channel: only the webhook's include its wait.
    assert telegram["p50_ms"] >= WEBHOOK_SECONDS * 1000
    assert web_turns["p50_ms"] < WEBHOOK_SECONDS * 1000
    assert json.loads(json.dumps(result))  # printed as JSON by `main`


async def test_a_failed_turn_starts_that_channel_again_and_the_turns_go_on() -> None:
    """A turn that fails is an error of the run; its client starts over on a new connection
    (a new conversation, or a new chat) and the two channels still take turns."""
    server = Server(failing_updates=1)
    async with serving(server.app()) as port:
        result = await loadgen.run(_interleaved(port, duration=0.5, warmup=0.0))

    assert result["errors"] == 1
    assert server.channels[:4] == ["web", "telegram", "web", "telegram"]
    assert result["channels"]["telegram"]["turns"] >= 3


async def test_a_channel_whose_every_turn_failed_is_reported_with_none() -> None:
    server = Server(failing_updates=10_000)
    async with serving(server.app()) as port:
        result = await loadgen.run(_interleaved(port, duration=0.3, warmup=0.0))

    assert result["errors"] >= 1
    assert result["channels"]["telegram"]["turns"] == 0
    assert result["channels"]["web"]["turns"] >= 1
