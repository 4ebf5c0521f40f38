"""python-telegram-bot's HTTP layer over one aiohttp session, instead of its httpx default.

Profiling the outbox at half Telegram's send limit showed PTB's `HTTPXRequest` (httpx and
httpcore) as the largest CPU cost per reply, more than the turn itself (BENCHMARKS.md).
aiohttp is already the server's library; one `ClientSession` with a bounded keep-alive pool
is reused for every call, so a reply costs one request on an open connection.

The body is form-encoded exactly as `HTTPXRequest` sends it (`RequestData.json_parameters`),
and files, which the bot never uploads, go as multipart. Errors map onto PTB's: a timeout is
`TimedOut`, any other client failure `NetworkError`. Messages name the error's class only:
the URL carries the bot token. At DEBUG each request is logged as httpx logged it, the token
redacted.

`call_unparsed` makes a Bot API call as `Bot` makes it but returns Telegram's answer as
decoded JSON: for a sent message we need its id only, for a removed keyboard nothing, and PTB
builds a whole `Message` from either answer, about as much CPU as the request itself. Answers
are decoded by orjson (`parse_json_payload`, the hook PTB provides for that), and an answer
that is not JSON is not logged: it could echo a message's text.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
from telegram import Bot
from telegram.error import NetworkError, TelegramError, TimedOut
from telegram.request import BaseRequest, RequestData

# PTB's own encoding of a parameter (python-telegram-bot is pinned in the lock files).
from telegram.request._requestparameter import RequestParameter

log = logging.getLogger(__name__)
#: A form without files, as aiohttp's FormData sends one (UTF-8, so no charset named).
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class AiohttpRequest(BaseRequest):
    """A `BaseRequest` for `telegram.Bot` over one reused `aiohttp.ClientSession`."""

    __slots__ = (
        "_connect_timeout",
        "_pool_size",
        "_pool_timeout",
        "_read_timeout",
        "_session",
        "_write_timeout",
    )

    def __init__(
        self,
        *,
        connection_pool_size: int = 32,
        connect_timeout: float | None = 5.0,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
    ) -> None:
        self._pool_size = connection_pool_size
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._pool_timeout = pool_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    @staticmethod
    def parse_json_payload(payload: bytes) -> dict[str, Any]:
        """As PTB's own (invalid UTF-8 replaced, `TelegramError` for what is not JSON), by
        orjson; what could not be read is not logged."""
        try:
            parsed = orjson.loads(payload)
        except orjson.JSONDecodeError:
            try:  # PTB reads invalid UTF-8 as replacement characters
                parsed = orjson.loads(payload.decode("utf-8", "replace"))
            except orjson.JSONDecodeError as error:
                raise TelegramError("Invalid server response") from error
        if not isinstance(parsed, dict):
            raise TelegramError("Invalid server response")
        return parsed

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                headers={"User-Agent": self.USER_AGENT},
                # Never read proxy settings or .netrc from the environment by surprise.
                trust_env=False,
            )

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: object = BaseRequest.DEFAULT_NONE,
        write_timeout: object = BaseRequest.DEFAULT_NONE,
        connect_timeout: object = BaseRequest.DEFAULT_NONE,
        pool_timeout: object = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("this AiohttpRequest is not initialized")
        read = _given(read_timeout, self._read_timeout)
        connect = _given(connect_timeout, self._connect_timeout)
        pool = _given(pool_timeout, self._pool_timeout)
        write = _given(write_timeout, self._write_timeout)
        timeout = aiohttp.ClientTimeout(
            # aiohttp's `connect` covers waiting for a free connection in the pool as well.
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect,
            # Writing a small form is not timed separately; the read bound starts after it.
            sock_read=None if read is None or write is None else max(read, write),
        )
        data: aiohttp.FormData | bytes | None = None
        headers: dict[str, str] | None = None
        if request_data is not None and request_data.contains_files:
            data = _form(request_data)
        elif request_data is not None:
            # The body aiohttp's FormData makes of these fields, made directly: FormData took
            # 13.5 µs for the keyboard edit after a tap and 41 µs for a reply, this 3.7 and
            # 20.5 µs (with aiohttp's wrapping of the bytes).
            data = urlencode(request_data.json_parameters, doseq=True).encode()
            headers = _FORM
        try:
            async with self._session.request(
                method, url, data=data, headers=headers, timeout=timeout
            ) as response:
                body = await response.read()
        except TimeoutError as error:
            raise TimedOut(f"aiohttp: {type(error).__name__}") from error
        except aiohttp.ClientError as error:
            raise NetworkError(f"aiohttp: {type(error).__name__}") from error
        # The request line httpx wrote, for whoever debugs; the token in it is redacted from
        # every record (bot.logging_setup.install_redaction).
        log.debug("HTTP Request: %s %s %d", method, url, response.status)
        return response.status, body


def _given(value: object, default: float | None) -> float | None:
    """A per-call timeout, or this request's default when PTB passes its DEFAULT_NONE."""
    if isinstance(value, int | float) or value is None:
        return None if value is None else float(value)
    return default


def _form(request_data: RequestData) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in request_data.json_parameters.items():
        form.add_field(name, value)
    for name, part in request_data.multipart_data.items():
        if isinstance(part, tuple):
            filename, content, *rest = part
            content_type = rest[0] if rest else None
            form.add_field(name, content, filename=filename, content_type=content_type)
        else:
            form.add_field(name, part)
    return form


async def call_unparsed(bot: Bot, method: str, **parameters: Any) -> Any:
    """Call `method` of the Bot API as `Bot` does (`Bot._do_post`: its request, so its
    timeouts, and its errors as PTB raises them: `BadRequest`, `Forbidden`, `RetryAfter`...;
    parameters encoded by PTB, None left out) and return the result as decoded JSON."""
    data = RequestData(
        [RequestParameter.from_input(k, v) for k, v in parameters.items() if v is not None]
    )
    return await bot.request.post(f"{bot.base_url}/{method}", request_data=data)
