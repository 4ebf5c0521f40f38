"""A fake Telegram Bot API in its own process: prints its base URL, then serves until killed.

Reuses the project's test fake (tests/fakes/telegram_api.py) when it is there; otherwise a
minimal aiohttp app answering {"ok": true, "result": ...} to the methods the channel calls.
The record of calls is cleared every second so a benchmark's memory stays bounded.

`--drive` (needs the test fake): the same process also posts updates to the app's webhook and
times each reply's arrival at the fake API on the same clock, for the reply-latency and burst
rows. It prints a second URL, a control endpoint: POST /run with a JSON scenario answers with
the measurements as JSON (see `Driver`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import sys
import time
from collections import defaultdict
from typing import Any

from aiohttp import web

from bench.loadgen import percentile
from bench.updates import BOT_ID, BOT_TOKEN

BOT_USER = {
    "id": BOT_ID,
    "is_bot": True,
    "first_name": "Care feedback",
    "username": "care_feedback_bot",
}


async def minimal() -> tuple[str, Any]:
    message_ids = itertools.count(1000)

    async def dispatch(request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if method == "getMe":
            result: Any = BOT_USER
        elif method == "sendMessage":
            params = (
                dict(await request.post())
                if request.content_type != "application/json"
                else await request.json()
            )
            result = {
                "message_id": next(message_ids),
                "date": 1_732_400_000,
                "from": BOT_USER,
                "chat": {"id": int(params.get("chat_id", 0)), "type": "private"},
                "text": params.get("text", ""),
            }
        else:
            result = True
        return web.json_response({"ok": True, "result": result})

    app = web.Application()
    app.router.add_route("*", "/bot{token}/{method}", dispatch)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return f"http://127.0.0.1:{runner.addresses[0][1]}", runner


class Driver:
    """Posts updates to the app's webhook and records when each reply reaches the fake API.

    A reply is a sendMessage to the chat. Its latency is measured from the moment its update
    was posted (so it covers the turn, the commit, the outbox and the send limit) and from the
    webhook's 200 (so after the commit).
    """

    def __init__(self) -> None:
        from tests.fakes.telegram_api import FakeTelegramAPI

        driver = self

        class Recording(FakeTelegramAPI):
            async def _m_sendMessage(self, params: dict[str, Any]) -> Any:
                result = await super()._m_sendMessage(params)
                driver.sent(int(params["chat_id"]))
                return result

        self.api = Recording(token=BOT_TOKEN)
        self.replies: dict[int, list[float]] = defaultdict(list)
        self.waiting: dict[int, list[tuple[int, asyncio.Future[None]]]] = defaultdict(list)
        self.methods: dict[str, int] = defaultdict(int)

    def sent(self, chat: int) -> None:
        self.replies[chat].append(time.monotonic())
        count = len(self.replies[chat])
        keep = []
        for n, future in self.waiting[chat]:
            if count >= n and not future.done():
                future.set_result(None)
            elif not future.done():
                keep.append((n, future))
        self.waiting[chat] = keep

    async def reply_number(self, chat: int, n: int, within: float) -> float | None:
        """When the chat's n-th reply (1-based) arrived, waiting for it up to `within` s."""
        if len(self.replies[chat]) < n:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.waiting[chat].append((n, future))
            try:
                await asyncio.wait_for(future, within)
            except TimeoutError:
                return None
        return self.replies[chat][n - 1]

    async def run(self, request: web.Request) -> web.Response:
        import aiohttp

        spec = await request.json()
        self.replies.clear()
        self.api.calls.clear()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            poster = _Poster(session, int(spec["port"]), str(spec["secret"]))
            if spec["scenario"] == "paced":
                result = await self.paced(poster, spec)
            else:
                result = await self.burst(poster, spec)
        counts: dict[str, int] = defaultdict(int)
        for call in self.api.calls:
            counts[call.method] += 1
        for method, n in poster.answered.items():
            counts[f"{method} (in the webhook's 200)"] += n
        result["calls"] = dict(counts)
        self.api.calls.clear()
        return web.json_response(result)

    async def paced(self, poster: _Poster, spec: dict[str, Any]) -> dict[str, Any]:
        """Open loop at `rate` updates a second over `chats` chats; a chat sends its next
        update only once the reply to its last one has arrived (a person reads, then answers).
        """
        from bench.updates import conversation_updates, prompts

        rate, chats, duration = float(spec["rate"]), int(spec["chats"]), float(spec["duration"])
        base = int(spec["base"])
        shown = prompts()
        queues = {base + i: conversation_updates(base + i, shown) for i in range(chats)}
        idle: asyncio.Queue[int] = asyncio.Queue()
        for chat in queues:
            idle.put_nowait(chat)
        after_post: list[float] = []
        after_ok: list[float] = []
        webhook: list[float] = []
        errors: list[str] = []
        missing = 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        tasks: set[asyncio.Task[None]] = set()

        async def one(chat: int) -> None:
            nonlocal missing
            try:
                update = queues[chat].pop(0)
                n = len(self.replies[chat]) + 1
                posted = time.monotonic()
                status = await poster.post(update)
                answered = time.monotonic()
                if status != 200:
                    errors.append(str(status))
                    return
                arrived = await self.reply_number(chat, n, 10.0)
                if arrived is None:
                    missing += 1
                    return
                webhook.append(answered - posted)
                after_post.append(arrived - posted)
                after_ok.append(max(0.0, arrived - answered))
            finally:
                if queues[chat]:  # a finished conversation's chat sends no more
                    idle.put_nowait(chat)

        for i in itertools.count():
            at = started + i / rate
            if at > started + duration:
                break
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            chat = await idle.get()
            task = asyncio.create_task(one(chat))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(set(tasks), timeout=30)
        return {
            "offered_rate": rate,
            "updates": len(after_post),
            "achieved_rate": len(after_post) / duration,
            "webhook": _stats(webhook),
            "reply_after_post": _stats(after_post),
            "reply_after_200": _stats(after_ok),
            "errors": len(errors),
            "missing": missing,
        }

    async def burst(self, poster: _Poster, spec: dict[str, Any]) -> dict[str, Any]:
        """`chats` chats each post `per_chat` updates back to back, all at once; every reply
        is waited for. `detail` has, per chat, when each update was accepted (its 200) and
        each reply arrived, in seconds from the start, for `bench.telegram_turns.chat_lags`;
        `fair` is the old check (every chat's first reply before any chat's last), kept to
        show that it fails even for a fair queue when posting is spread out."""
        from bench.updates import conversation_updates, prompts

        chats, per_chat, base = int(spec["chats"]), int(spec["per_chat"]), int(spec["base"])
        shown = prompts()
        lags: list[float] = []
        errors: list[str] = []
        started = time.monotonic()
        posted_all: list[float] = []
        accepted: dict[int, list[float]] = {}

        async def chat_burst(chat: int) -> None:
            answered = accepted.setdefault(chat, [])
            for update in conversation_updates(chat, shown)[:per_chat]:
                status = await poster.post(update)
                if status != 200:
                    errors.append(str(status))
                    return
                answered.append(time.monotonic())
            posted_all.append(time.monotonic())
            for n, at in enumerate(answered, start=1):
                arrived = await self.reply_number(chat, n, 120.0)
                if arrived is not None:
                    lags.append(max(0.0, arrived - at))

        ids = [base + i for i in range(chats)]
        await asyncio.gather(*(chat_burst(chat) for chat in ids))
        # Over the chats whose every update was accepted (a 503 leaves a chat short).
        complete = [c for c in ids if len(self.replies[c]) >= per_chat]
        firsts = [self.replies[c][0] for c in complete]
        lasts = [self.replies[c][per_chat - 1] for c in complete]
        all_replies = [t for c in ids for t in self.replies[c]]
        return {
            "replies": len(all_replies),
            "expected": chats * per_chat,
            "posting_s": (max(posted_all) - started) if posted_all else float("nan"),
            "drain_s": (max(all_replies) - started) if all_replies else float("nan"),
            "fair": bool(firsts and lasts and max(firsts) < min(lasts)),
            "complete_chats": len(complete),
            "lag": _stats(lags),
            "errors": len(errors),
            "detail": {
                str(c): {
                    "accepted": [t - started for t in accepted.get(c, [])],
                    "replies": [t - started for t in self.replies[c]],
                }
                for c in ids
            },
        }


class _Poster:
    def __init__(self, session: Any, port: int, secret: str) -> None:
        self.session = session
        self.url = f"http://127.0.0.1:{port}/telegram/webhook"
        self.headers = {
            "X-Telegram-Bot-Api-Secret-Token": secret,
            "Content-Type": "application/json",
        }
        #: Methods named in the webhook's 200s, which Telegram would perform (not timed).
        self.answered: dict[str, int] = defaultdict(int)

    async def post(self, update: dict[str, Any]) -> int:
        async with self.session.post(
            self.url, data=json.dumps(update), headers=self.headers
        ) as response:
            body = await response.read()
            if response.status == 200:
                method = json.loads(body).get("method")
                if method:
                    self.answered[method] += 1
            return int(response.status)


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    ordered = sorted(values)
    return {
        "p50_ms": percentile(ordered, 50) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
        "max_ms": ordered[-1] * 1000,
    }


async def drive() -> None:
    driver = Driver()
    url = await driver.api.start()
    control = web.Application()
    control.router.add_post("/run", driver.run)
    runner = web.AppRunner(control, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(url, "driver", f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()
    await driver.api.close()


async def main() -> None:
    try:
        from tests.fakes.telegram_api import FakeTelegramAPI

        fake = FakeTelegramAPI(token=BOT_TOKEN)
        url = await fake.start()
        kind = "tests.fakes.telegram_api"
    except ImportError:
        fake = None
        url, _runner = await minimal()
        kind = "minimal"
    print(url, kind, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        if fake is not None:
            fake.calls.clear()
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass
    if fake is not None:
        await fake.close()


if __name__ == "__main__":
    asyncio.run(drive() if "--drive" in sys.argv[1:] else main())
    sys.exit(0)
