"""A fake Telegram Bot API server on loopback, for tests that run python-telegram-bot's real code.

It implements the methods the channel uses, records every call (method and parsed
parameters, including the ones it refused), and can be told to fail: 429 with
`retry_after`, 403 "bot was blocked", 400 "chat not found", 500, or a dropped connection,
for the next K calls, or for one chat. `getUpdates` long-polls a queue the test fills.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "123:TEST"
BOT_USER = {
    "id": 123,
    "is_bot": True,
    "first_name": "Care feedback",
    "username": "care_feedback_test_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
#: Parameters PTB sends JSON-encoded; text-like ones stay strings (a text "12" must not
#: become a number).
JSON_PARAMS = frozenset(
    {
        "chat_id",
        "message_id",
        "message_ids",
        "reply_markup",
        "allowed_updates",
        "commands",
        "scope",
        "offset",
        "limit",
        "timeout",
        "drop_pending_updates",
        "link_preview_options",
        "show_alert",
        "max_connections",
        "disable_notification",
        "protect_content",
    }
)


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    #: "ok", or what the fake answered instead ("429", "403", "400", "500", "drop").
    outcome: str = "ok"
    #: What the fake answered on success (e.g. the sent message, with its message_id).
    result: Any = None
    at: float = field(default_factory=time.monotonic)

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return int(value) if value is not None else None


@dataclass
class Fault:
    """Answer `kind` to matching calls, `remaining` times (None: until cleared)."""

    kind: str
    remaining: int | None
    method: str | None = "sendMessage"
    chat_id: int | None = None
    retry_after: int = 1

    def matches(self, method: str, params: dict[str, Any]) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method is not None and method != self.method:
            return False
        return not (self.chat_id is not None and params.get("chat_id") != self.chat_id)


class FakeTelegramAPI:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.updates: list[dict[str, Any]] = []
        self._updates_changed = asyncio.Condition()
        self._message_ids = itertools.count(1000)
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.delay = 0.0
        #: Message ids deleted (deleteMessages), per chat.
        self.deleted: dict[int, list[int]] = {}

    # ------------------------------------------------------------------ server lifecycle

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        async with self._updates_changed:
            self._updates_changed.notify_all()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ test controls

    def fail(
        self,
        kind: str,
        *,
        times: int | None = 1,
        method: str | None = "sendMessage",
        chat_id: int | None = None,
        retry_after: int = 1,
    ) -> Fault:
        """kind: "429", "403", "400" (chat not found), "500" or "drop"."""
        fault = Fault(kind, times, method, chat_id, retry_after)
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self.faults.clear()

    async def push_update(self, update: dict[str, Any]) -> None:
        async with self._updates_changed:
            self.updates.append(update)
            self._updates_changed.notify_all()

    def of(self, method: str, *, chat_id: int | None = None, ok_only: bool = True) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.method == method
            and (chat_id is None or c.chat_id == chat_id)
            and (not ok_only or c.outcome == "ok")
        ]

    def sent(self, chat_id: int | None = None) -> list[Call]:
        """Successful sendMessage calls, in the order the fake answered them."""
        return self.of("sendMessage", chat_id=chat_id)

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [c.params["text"] for c in self.sent(chat_id)]

    async def wait_for(
        self, predicate: Callable[[], bool], *, within: float = 5.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; calls: {self.summary()}")
            await asyncio.sleep(0.01)

    async def wait_sent(
        self, count: int, *, chat_id: int | None = None, within: float = 5.0
    ) -> None:
        await self.wait_for(
            lambda: len(self.sent(chat_id)) >= count,
            within=within,
            what=f"{count} messages to {chat_id}",
        )

    def summary(self) -> list[tuple[str, Any, str]]:
        return [(c.method, c.params.get("chat_id"), c.outcome) for c in self.calls[-40:]]

    # ------------------------------------------------------------------ the API

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _fail(401, "Unauthorized")
        method = request.match_info["method"]
        params = await _params(request)
        call = Call(method, params)
        self.calls.append(call)
        if self.delay:
            await asyncio.sleep(self.delay)
        for fault in self.faults:
            if fault.matches(method, params):
                if fault.remaining is not None:
                    fault.remaining -= 1
                call.outcome = fault.kind
                return await _fault_response(request, fault)
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            call.outcome = "404"
            return _fail(404, "Not Found: method not found")
        result = await handler(params)
        call.result = result
        return web.json_response({"ok": True, "result": result})

    async def _m_getMe(self, params: dict[str, Any]) -> Any:
        return BOT_USER

    async def _m_setWebhook(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_setMyCommands(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": params["chat_id"], "type": "private"},
            "from": BOT_USER,
            "text": params.get("text", ""),
        }
        if "reply_markup" in params:
            message["reply_markup"] = params["reply_markup"]
        return message

    async def _m_deleteMessages(self, params: dict[str, Any]) -> Any:
        """Like the Bot API: 1 to 100 ids a call; ids it cannot find are skipped."""
        ids = params.get("message_ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise web.HTTPBadRequest(
                text=json.dumps(
                    {"ok": False, "error_code": 400, "description": "Bad Request: message_ids"}
                ),
                content_type="application/json",
            )
        self.deleted.setdefault(int(params["chat_id"]), []).extend(int(i) for i in ids)
        return True

    async def _m_editMessageReplyMarkup(self, params: dict[str, Any]) -> Any:
        return {
            "message_id": params.get("message_id"),
            "date": int(time.time()),
            "chat": {"id": params.get("chat_id"), "type": "private"},
            "from": BOT_USER,
            "text": "edited",
        }

    async def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        offset = params.get("offset")
        timeout = float(params.get("timeout") or 0)
        async with self._updates_changed:
            if offset is not None:
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            if not self.updates and timeout:
                try:
                    await asyncio.wait_for(self._updates_changed.wait(), min(timeout, 2.0))
                except TimeoutError:
                    pass
            return list(self.updates)


async def _params(request: web.Request) -> dict[str, Any]:
    raw: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            raw.update(await request.json())
        else:
            form = await request.post()
            raw.update({k: v for k, v in form.items() if isinstance(v, str)})
    parsed: dict[str, Any] = {}
    for key, value in raw.items():
        if key in JSON_PARAMS and isinstance(value, str):
            try:
                parsed[key] = json.loads(value)
                continue
            except ValueError:
                pass
        parsed[key] = value
    return parsed


def _fail(status: int, description: str, **parameters: Any) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)


async def _fault_response(request: web.Request, fault: Fault) -> web.StreamResponse:
    if fault.kind == "429":
        return _fail(
            429,
            f"Too Many Requests: retry after {fault.retry_after}",
            retry_after=fault.retry_after,
        )
    if fault.kind == "403":
        return _fail(403, "Forbidden: bot was blocked by the user")
    if fault.kind == "400":
        return _fail(400, "Bad Request: chat not found")
    if fault.kind == "drop":
        assert request.transport is not None
        request.transport.abort()
        return web.Response(status=500)
    return _fail(500, "Internal Server Error")
