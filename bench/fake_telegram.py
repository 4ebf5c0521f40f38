"""A fake Telegram Bot API in its own process: prints its base URL, then serves until killed.

Reuses the project's test fake (tests/fakes/telegram_api.py) when it is there; otherwise a
minimal aiohttp app answering {"ok": true, "result": ...} to the methods the channel calls.
The record of calls is cleared every second so a benchmark's memory stays bounded.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
from typing import Any

from aiohttp import web

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
    asyncio.run(main())
    sys.exit(0)
