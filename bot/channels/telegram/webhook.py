"""POST /telegram/webhook: authenticate, parse, run the turn, and only then answer 200.

The common updates are read from the JSON directly, the rest by python-telegram-bot
(`updates.read_update`).

Telegram retries any non-2xx answer, so a database failure before commit (503) loses nothing;
a repeated update is answered from the inbound log. A failure a retry would only repeat (a
bug, a malformed update) is NOT retried: redelivering it forever would hold up the chat. A bug
is logged, counted and told to the person by the handler, and answered 200; a malformed body
or a bad secret is a 4xx.
PTB's own webhook server is not used because it acknowledges before handling.
A button press is answered in the 200's body (`{"method": "answerCallbackQuery", ...}`),
which Telegram performs: no Bot API request of our own for it.
"""

from __future__ import annotations

import hmac
import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from telegram import Bot

from bot import jsonenc
from bot.channels.telegram.updates import Action, read_update
from bot.ports import StorageError

log = logging.getLogger(__name__)

PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name


def _json(data: Any, status: int = 200) -> web.Response:
    """A JSON answer, encoded by `bot.jsonenc` (aiohttp's `web.json_response` goes through
    the standard library's slower `json.dumps`), as the web channel's answers are."""
    return web.Response(
        body=jsonenc.dumps(data), status=status, content_type="application/json", charset="utf-8"
    )


def _error(status: int, code: str, message: str) -> web.Response:
    return _json({"error": {"code": code, "message": message}}, status=status)


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is longer than `limit` (whatever Content-Length claimed)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    async for chunk in request.content.iter_chunked(16 * 1024):
        body.extend(chunk)
        if len(body) > limit:
            return None
    return bytes(body)


def make_webhook_view(
    *,
    secret: str,
    max_body_bytes: int,
    bot: Callable[[], Bot],
    handle: Callable[[], Callable[[int, Action], Awaitable[dict[str, Any] | None]]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The route handler; `bot` and `handle` are looked up per request because they are
    created at startup, after routes are frozen."""
    expected = secret.encode("ascii")

    async def webhook(request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER)
        if given is None or not given.isascii():
            # A secret is ASCII; other bytes (aiohttp keeps undecodable ones as surrogates)
            # cannot be compared as bytes, and are no credential at all.
            return _error(401, "unauthorized", "missing secret token")
        if not hmac.compare_digest(given.encode("ascii"), expected):
            return _error(403, "forbidden", "wrong secret token")
        body = await _read_limited(request, max_body_bytes)
        if body is None:
            return _error(413, "too_large", "body too large")
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("not an update")
            update_id, action = read_update(data, bot())
        except Exception as error:  # whatever python-telegram-bot cannot parse is malformed
            log.warning("telegram webhook: malformed update (%s)", type(error).__name__)
            return _error(400, "malformed", "not a Telegram update")
        answer: dict[str, Any] | None = None
        try:
            answer = await handle()(update_id, action)
        except StorageError as error:
            log.warning(
                "telegram webhook: update %s not handled, database unavailable (%s)",
                update_id,
                type(error).__name__,
            )
            return _error(503, "unavailable", "try again later")
        except Exception as error:
            # A bug, which a retry would repeat: Telegram would redeliver the update forever
            # and hold up the chat. The handler has already told the person; acknowledge.
            log.error(
                "telegram webhook: update %s failed with %s; acknowledged, not retried\n%s",
                update_id,
                type(error).__name__,
                "".join(traceback.format_tb(error.__traceback__)),
            )
        # A method named in the body is performed by Telegram (answering a button press).
        return _json(answer if answer is not None else {"ok": True})

    return webhook
