"""The open loop starts with its conversations spread over the script (`bench.loadgen`,
`--start staggered`): started together, none could submit before its 19 turns, so a window
held few reports or a wave of them, as no steady traffic does. Driven here against a small
web chat API on loopback that checks each conversation's turns come in the script's order."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from itertools import count
from typing import Any

import pytest
from aiohttp import web

from bench import loadgen
from bench.script import SCRIPT
from bot import metrics
from tests.fakes.loopback import serving


def test_the_conversations_start_evenly_over_the_steps() -> None:
    turns = loadgen.phases(200, 20)
    assert Counter(turns) == {step: 10 for step in range(20)}
    assert loadgen.phases(3, 1) == [0, 0, 0]


class ChatApi:
    """Creates conversations and answers their turns; the last turn gets a reference."""

    def __init__(self) -> None:
        self.turns: dict[str, int] = {}
        self.submitted = 0
        self.ids = count(1)

    async def create(self, request: web.Request) -> web.Response:
        conversation = str(next(self.ids))
        self.turns[conversation] = 0
        return web.json_response({"conversation_id": conversation, "token": "t"}, status=201)

    async def message(self, request: web.Request) -> web.Response:
        conversation = request.match_info["id"]
        step = SCRIPT[self.turns[conversation]]
        if (await request.json()).get(step.kind) != step.value:
            return web.json_response({"error": "out of order"}, status=409)
        self.turns[conversation] += 1
        if self.turns[conversation] < len(SCRIPT):
            return web.json_response({})
        self.submitted += 1
        return web.json_response({"reference": f"R{self.submitted}"})


def _chat_app(api: ChatApi) -> web.Application:
    app = web.Application()
    app.router.add_post("/api/v1/conversations", api.create)
    app.router.add_post("/api/v1/conversations/{id}/messages", api.message)
    return app


@pytest.fixture
async def chat_api() -> AsyncIterator[tuple[ChatApi, int]]:
    api = ChatApi()
    async with serving(_chat_app(api)) as port:
        yield api, port


def _open_loop(port: int, start: str) -> argparse.Namespace:
    # 20 conversations, 150 turns at 300/s: about 7.5 turns each of a conversation's 20.
    return argparse.Namespace(
        mode="web",
        port=port,
        concurrency=20,
        rate=300.0,
        duration=0.5,
        warmup=0.0,
        count=0,
        turns_per_conversation=0,
        drain=10.0,
        start=start,
    )


async def test_staggered_conversations_submit_from_the_first_second(
    chat_api: tuple[ChatApi, int],
) -> None:
    api, port = chat_api
    result = await loadgen.run(_open_loop(port, "staggered"))
    assert result["errors"] == 0, result["first_errors"]
    assert result["start"] == "staggered"
    assert result["prepared_turns"] == sum(loadgen.phases(20, len(SCRIPT) + 1)) == 190
    # Those started a few turns from the end submit within the window (four of them start 1,
    # 2, 3 and 4 turns before it).
    assert result["conversations_completed"] >= 3
    assert api.submitted == result["conversations_completed"]
    # The server's CPU per turn is over every request it answered, spreading included.
    served = sum(api.turns.values()) + len(api.turns)  # turns, and the creations
    assert result["answered"] == served >= result["turns"] + result["prepared_turns"]
    assert json.loads(json.dumps(result))  # printed as JSON by `main`


async def test_conversations_started_together_are_all_still_talking(
    chat_api: tuple[ChatApi, int],
) -> None:
    api, port = chat_api
    result = await loadgen.run(_open_loop(port, "together"))
    assert result["errors"] == 0, result["first_errors"]
    assert (result["start"], result["prepared_turns"]) == ("together", 0)
    # About 7.5 turns each of a conversation's 20: none has reached submission.
    assert result["conversations_completed"] == api.submitted == 0


async def test_a_backlog_left_by_the_warm_up_is_not_measured() -> None:
    """A cold server answers the warm-up's first turns a second late: those turns are the
    warm-up's, counted as carried in; the window measures the turns scheduled in it."""
    loop = asyncio.get_running_loop()
    first_request: list[float] = []
    ids = count(1)

    async def answer(body: dict[str, str], status: int) -> web.Response:
        first_request[:] = first_request or [loop.time()]
        if loop.time() < first_request[0] + 0.2:  # cold for the first 0.2 s
            await asyncio.sleep(1.0)
        return web.json_response(body, status=status)

    async def create(_request: web.Request) -> web.Response:
        return await answer({"conversation_id": str(next(ids)), "token": "t"}, 201)

    async def message(_request: web.Request) -> web.Response:
        return await answer({}, 200)

    app = web.Application()
    app.router.add_post("/api/v1/conversations", create)
    app.router.add_post("/api/v1/conversations/{id}/messages", message)
    async with serving(app) as port:
        args = _open_loop(port, "together")
        args.concurrency, args.rate, args.warmup, args.duration = 200, 200.0, 0.5, 0.5
        result = await loadgen.run(args)

    assert result["errors"] == 0, result["first_errors"]
    # About 40 turns scheduled in the first 0.2 s waited a second, into the window.
    assert result["carried_in"] >= 30
    assert result["max_ms"] < 1000
    assert abs(result["turns"] - 100) <= 1  # 0.5 s at 200/s: those scheduled in the window


class MeteredChatApi(ChatApi):
    """Also tells `bot.metrics` of one write batch for each request it answers, as the app
    does, and serves /metrics: the first `slow_requests` batches take 200 ms, the rest 1."""

    def __init__(self, slow_requests: int) -> None:
        super().__init__()
        self.slow_left = slow_requests

    def _batch(self) -> None:
        seconds = 0.2 if self.slow_left > 0 else 0.001
        self.slow_left -= 1
        metrics.record_write_batch("test.window", "committed", 1, seconds)

    async def create(self, request: web.Request) -> web.Response:
        self._batch()
        return await super().create(request)

    async def message(self, request: web.Request) -> web.Response:
        self._batch()
        return await super().message(request)

    async def exposition(self, _request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition([], 0), content_type="text/plain")


async def _run_metered(api: MeteredChatApi) -> dict[str, Any]:
    app = _chat_app(api)
    app.router.add_get("/metrics", api.exposition)
    async with serving(app) as port:
        result = await loadgen.run(_open_loop(port, "staggered"))
    assert result["errors"] == 0, result["first_errors"]
    return result


async def test_the_spreadings_slow_batches_are_not_the_windows() -> None:
    """Spreading the conversations is a closed loop's burst, whose long batches come in every
    run: the window's batches are read as it opens, so none of those is counted."""
    spreading = sum(loadgen.phases(20, len(SCRIPT) + 1))  # its requests, creations too
    result = await _run_metered(MeteredChatApi(slow_requests=spreading))
    window = result["window_batches"]
    assert window["slow"] == window["slower"] == 0
    # Every turn of the window told of its batch (a few, answered as the first read was on
    # its way, may fall before it).
    assert result["turns"] - 5 <= window["batches"] <= result["answered"] - spreading


async def test_the_windows_slow_batches_are_counted() -> None:
    result = await _run_metered(MeteredChatApi(slow_requests=10_000))
    window = result["window_batches"]
    assert window["slow"] == window["slower"] == window["batches"] >= result["turns"] - 5


async def test_a_server_without_metrics_has_no_window_batches(
    chat_api: tuple[ChatApi, int],
) -> None:
    _api, port = chat_api
    result = await loadgen.run(_open_loop(port, "staggered"))
    assert result["window_batches"] is None
