"""PTB's HTTP layer over aiohttp (`request.AiohttpRequest`): what it sends, and how a slow or
absent Bot API surfaces as PTB's own errors, without the token-bearing URL in them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import parse_qsl

import pytest
from aiohttp import FormData, web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Message
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.request import BaseRequest

from bot.channels.telegram.delivery import NO_PREVIEW
from bot.channels.telegram.render import build_keyboard
from bot.channels.telegram.request import AiohttpRequest, call_unparsed
from bot.intake.rendering import RenderedChoice

TOKEN = "123456:SECRET-token-part"


@pytest.fixture
async def api() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A Bot API answering sendMessage (recording its form) and hanging on getChat."""
    seen: list[dict[str, str]] = []
    released = asyncio.Event()

    async def send_message(request: web.Request) -> web.Response:
        seen.append({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        message = {"message_id": 7, "date": 0, "chat": {"id": 42, "type": "private"}}
        return web.json_response({"ok": True, "result": message})

    async def hang(request: web.Request) -> web.Response:
        await released.wait()
        return web.json_response({"ok": True, "result": True})

    app = web.Application()
    app.router.add_post(f"/bot{TOKEN}/sendMessage", send_message)
    app.router.add_post(f"/bot{TOKEN}/getChat", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", seen
    released.set()
    await runner.cleanup()


def _bot(base: str) -> Bot:
    request = AiohttpRequest(connect_timeout=1.0, read_timeout=0.3, write_timeout=0.3)
    return Bot(TOKEN, base_url=f"{base}/bot", request=request, get_updates_request=request)


@contextlib.asynccontextmanager
async def _bot_api(
    method: Callable[[web.Request], Awaitable[web.Response]],
) -> AsyncIterator[Bot]:
    """A Bot API on loopback answering every method with `method`, and a Bot using it."""
    app = web.Application()
    app.router.add_post(f"/bot{TOKEN}/{{method}}", method)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    bot = _bot(f"http://127.0.0.1:{runner.addresses[0][1]}")
    await bot.request.initialize()
    try:
        yield bot
    finally:
        await bot.request.shutdown()
        await runner.cleanup()


async def test_a_message_is_sent_as_ptbs_form_and_its_answer_read(
    api: tuple[str, list[dict[str, str]]],
) -> None:
    base, seen = api
    bot = _bot(base)
    request = bot.request
    await request.initialize()
    try:
        message = await bot.send_message(42, "Hello", disable_notification=True)
    finally:
        await request.shutdown()
    assert message.message_id == 7
    assert seen == [{"chat_id": "42", "text": "Hello", "disable_notification": "true"}]


async def test_a_slow_api_is_timed_out_and_an_absent_one_a_network_error(
    api: tuple[str, list[dict[str, str]]],
) -> None:
    base, _seen = api
    bot = _bot(base)
    await bot.request.initialize()
    try:
        with pytest.raises(TimedOut) as slow:
            await bot.get_chat(42)
    finally:
        await bot.request.shutdown()
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    absent = _bot(f"http://127.0.0.1:{closed}")
    await absent.request.initialize()
    try:
        with pytest.raises(NetworkError) as down:
            await absent.send_message(42, "Hello")
    finally:
        await absent.request.shutdown()
    for error in (slow.value, down.value):
        assert TOKEN not in str(error) and "SECRET" not in repr(error.__cause__ or "")


async def test_a_call_made_unparsed_is_sent_as_ptb_sends_it_and_its_answer_not_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sending a reply and removing an answered keyboard: the same form PTB's own methods post
    (a keyboard and the link preview options as JSON, None left out), PTB's errors, and the
    answer as JSON, no `Message` built from it."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # as `client.build_bot` opts in: no warning
    seen: list[tuple[str, dict[str, str]]] = []

    async def method(request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        seen.append((request.match_info["method"], form))
        if form.get("message_id") == "8":
            return web.json_response(
                {"ok": False, "error_code": 400, "description": "Bad Request: not modified"},
                status=400,
            )
        if form.get("chat_id") == "13":
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 3",
                    "parameters": {"retry_after": 3},
                },
                status=429,
            )
        message = {"message_id": 7, "date": 0, "chat": {"id": 42, "type": "private"}}
        return web.json_response({"ok": True, "result": message})

    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="yes")]])
    preview = LinkPreviewOptions(is_disabled=True)
    async with _bot_api(method) as bot:
        # PTB's own methods first, for the forms to compare with.
        await bot.send_message(42, "Hi", reply_markup=keyboard, link_preview_options=preview)
        await bot.send_message(42, "Hi", reply_markup=None, link_preview_options=preview)
        await bot.edit_message_reply_markup(42, 7, reply_markup=None)

        def no_parsing(*args: object, **kwargs: object) -> None:
            raise AssertionError("the answer was parsed")

        monkeypatch.setattr(Message, "de_json", no_parsing)
        for markup in (keyboard, None):
            sent = await call_unparsed(
                bot,
                "sendMessage",
                chat_id=42,
                text="Hi",
                reply_markup=markup,
                link_preview_options=preview,
            )
            assert sent["message_id"] == 7
        await call_unparsed(bot, "editMessageReplyMarkup", chat_id=42, message_id=7)
        with pytest.raises(BadRequest, match=r"(?i)not modified"):
            await call_unparsed(bot, "editMessageReplyMarkup", chat_id=42, message_id=8)
        with pytest.raises(RetryAfter):
            await call_unparsed(bot, "sendMessage", chat_id=13, text="Hi")
    assert seen[3:6] == seen[0:3]
    assert seen[0] == (
        "sendMessage",
        {
            "chat_id": "42",
            "text": "Hi",
            "reply_markup": keyboard.to_json(),
            "link_preview_options": preview.to_json(),
        },
    )
    assert seen[2] == ("editMessageReplyMarkup", {"chat_id": "42", "message_id": "7"})


async def test_the_form_on_the_wire_is_utf8_urlencoded_as_aiohttp_encodes_a_form() -> None:
    """The body is made without aiohttp's FormData (`AiohttpRequest.do_request`): the same
    bytes and Content-Type it would send, for text with spaces, '&', '=', '+', newlines and
    characters outside ASCII."""
    received: list[tuple[str | None, bytes]] = []

    async def method(request: web.Request) -> web.Response:
        received.append((request.headers.get("Content-Type"), await request.read()))
        message = {"message_id": 7, "date": 0, "chat": {"id": 42, "type": "private"}}
        return web.json_response({"ok": True, "result": message})

    text = "Ça va? 1+1=2 & more\nŻółć 🙂 <b>x</b>"
    async with _bot_api(method) as bot:
        await call_unparsed(bot, "sendMessage", chat_id=42, text=text)
    fields = {"chat_id": "42", "text": text}
    expected = FormData(fields)()
    [(content_type, body)] = received
    assert content_type == expected.content_type == "application/x-www-form-urlencoded"
    assert body == expected._value
    assert dict(parse_qsl(body.decode())) == fields


async def test_answers_are_read_as_ptb_reads_them_and_one_not_json_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`AiohttpRequest.parse_json_payload` (orjson): invalid UTF-8 in an answer becomes
    replacement characters, as PTB's own reading makes it; an answer that is not JSON is
    PTB's `TelegramError`, and neither its text (which could echo what was sent) nor any of
    it reaches the log, where PTB's own reading logged it whole."""
    answers = {
        "sendMessage": b'{"ok": true, "result": {"message_id": 7, "text": "caf\xe9"}}',
        "getChat": b"<html>private: my father was left without water</html>",
        "getMe": b'["not", "an", "object"]',
    }

    async def method(request: web.Request) -> web.Response:
        body = answers[request.match_info["method"]]
        return web.Response(body=body, content_type="application/json")

    async with _bot_api(method) as bot:
        sent = await call_unparsed(bot, "sendMessage", chat_id=42, text="Hi")
        assert sent == {"message_id": 7, "text": "caf\N{REPLACEMENT CHARACTER}"}
        assert BaseRequest.parse_json_payload(answers["sendMessage"])["result"] == sent
        with caplog.at_level(logging.DEBUG), pytest.raises(TelegramError, match="Invalid"):
            await call_unparsed(bot, "getChat", chat_id=42)
        with pytest.raises(TelegramError, match="Invalid"):
            await call_unparsed(bot, "getMe")
    assert "water" not in caplog.text


def test_the_keyboard_and_preview_options_are_the_json_ptb_would_send() -> None:
    """A reply's `reply_markup` and `link_preview_options` are made as JSON text directly
    (`render.build_keyboard`, `delivery.NO_PREVIEW`): the same JSON values PTB's objects
    encode to, so Telegram reads the same keyboard, labels outside ASCII included."""
    keyboard = build_keyboard(
        [RenderedChoice("yes", "Ja, gerne"), RenderedChoice("no", "Нет"), RenderedChoice("x", "")]
    )
    expected = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("Ja, gerne", callback_data="yes"),
                InlineKeyboardButton("Нет", callback_data="no"),
            ],
            [InlineKeyboardButton("x", callback_data="x")],
        ]
    )
    assert keyboard is not None
    assert json.loads(keyboard) == json.loads(expected.to_json())
    assert json.loads(NO_PREVIEW) == json.loads(LinkPreviewOptions(is_disabled=True).to_json())
