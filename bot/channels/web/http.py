"""HTTP plumbing for the web channel: one error shape, safe JSON bodies, privacy-safe logs.

Every failure a client can see is `{"error": {"code", "message"}}`, so the widget needs one
code path for errors; nothing internal (exception text, SQL, paths) ever reaches a response.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from bot import jsonenc
from bot.intake.service import ConversationNotFound
from bot.ports import StorageError

log = logging.getLogger("bot.channels.web.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Set on the request by the CORS guard when the Origin may read the response.
CORS_ORIGIN = web.RequestKey("intake_cors_origin", str)
#: How long a client should wait before retrying after the database went away.
STORAGE_RETRY_AFTER_SECONDS = 2

_SEND_JSON = "Send JSON with Content-Type: application/json."

#: A request body that takes longer than this to arrive is refused (408): a slow client must
#: not hold a connection and its buffers open for as long as it likes. (The headers have their
#: own limit: the server's keepalive timeout, see `SERVER_OPTIONS` in `bot.channels.web.api`.)
BODY_READ_TIMEOUT_SECONDS = 15.0

#: Default codes and messages for HTTP errors raised by aiohttp itself (routing, body size).
_STATUS_ERRORS: Mapping[int, tuple[str, str]] = {
    400: ("bad_request", "The request could not be understood."),
    401: ("unauthorized", "A valid token is needed for this conversation."),
    403: ("forbidden", "This request is not allowed."),
    404: ("not_found", "There is nothing here."),
    405: ("method_not_allowed", "This method is not allowed here."),
    408: ("request_timeout", "The request came too slowly. Please try again."),
    413: ("too_large", "The request body is too large."),
    415: ("unsupported_media_type", _SEND_JSON),
    429: ("rate_limited", "Too many requests. Please wait a moment and try again."),
    500: ("internal_error", "Something went wrong on our side. Please try again."),
    503: ("unavailable", "The service is busy. Please try again in a moment."),
}

#: Headers of an aiohttp HTTP error worth keeping on the JSON replacement.
_KEPT_HEADERS = (hdrs.ALLOW, hdrs.RETRY_AFTER, hdrs.WWW_AUTHENTICATE)


class MalformedRequestLogFilter(logging.Filter):
    """aiohttp's server logs a request it cannot parse (bad header bytes, a bad request line:
    the client's fault) as an error with a traceback and the client's address. Here it becomes
    one info line, without the address: not a server error, and no personal data in logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        status = getattr(exc, "code", 500) if isinstance(exc, HttpProcessingError) else 500
        client_fault = isinstance(exc, ConnectionResetError) or status < 500
        if exc is not None and client_fault:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "malformed request refused (%s)", (type(exc).__name__,)
            record.exc_info = record.exc_text = None
        return True


def quiet_client_errors_in_server_log() -> None:
    """Install `MalformedRequestLogFilter` on aiohttp's server logger, once per process."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestLogFilter) for f in server_log.filters):
        server_log.addFilter(MalformedRequestLogFilter())


class ApiError(Exception):
    """A client-visible failure; raised anywhere in a handler, rendered by the middleware."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def bad_request(code: str, message: str) -> NoReturn:
    raise ApiError(400, code, message)


def json_response(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Every JSON body of the web channel, encoded by `bot.jsonenc` (aiohttp's own
    `web.json_response` goes through the standard library's slower `json.dumps`)."""
    return web.Response(
        body=jsonenc.dumps(data),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    """aiohttp's own errors (unknown route, 405, 413 from client_max_size) in our shape."""
    code, message = _STATUS_ERRORS.get(
        exc.status, ("http_error" if exc.status < 500 else "internal_error", exc.reason)
    )
    kept: dict[str, str] = {k: v for k in _KEPT_HEADERS if (v := exc.headers.get(k)) is not None}
    return error_response(exc.status, code, message, kept)


def route_template(request: web.Request) -> str:
    """The route as registered (`/api/v1/conversations/{conversation_id}`), never the real
    path: conversation ids in logs would link log lines to one person's report."""
    route = request.match_info.route
    resource = route.resource
    if resource is None or request.match_info.http_exception is not None:
        return "<unmatched>"
    return resource.canonical


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Method, route template, status and timing only: no bodies, tokens or client details."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # only redirects get past the error middleware
        status = exc.status
        raise
    finally:
        log.info(
            "%s %s %d %.1fms",
            request.method,
            route_template(request),
            status,
            (time.perf_counter() - started) * 1000,
        )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every exception into the JSON error shape; unexpected ones into a bare 500."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    except ConversationNotFound:
        return error_response(404, "not_found", "There is no such conversation.")
    except StorageError:
        # The turn was rolled back as a whole: retrying with the same client_message_id is safe.
        log.warning("storage unavailable on %s %s", request.method, route_template(request))
        return error_response(
            503,
            "storage_unavailable",
            "We could not save that just now. Please try again in a moment.",
            {hdrs.RETRY_AFTER: str(STORAGE_RETRY_AFTER_SECONDS)},
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http_exception(exc)
    except ConnectionResetError:
        # The client went away mid-request (aiohttp's ClientConnectionResetError is one of
        # these): nothing is wrong on our side, and nobody is left to read an answer.
        log.info("client disconnected during %s %s", request.method, route_template(request))
        return error_response(400, "client_disconnected", "The connection was closed.")
    except Exception as exc:
        # Log the exception type and code locations only: an exception's message may quote
        # what the person typed.
        frames = "".join(traceback.format_tb(exc.__traceback__))
        log.error(
            "unhandled %s on %s %s\n%s",
            type(exc).__name__,
            request.method,
            route_template(request),
            frames,
        )
        code, message = _STATUS_ERRORS[500]
        return error_response(500, code, message)


# ---------------------------------------------------------------------- JSON bodies


#: No field of this API is a number; a longer integer is refused before Python converts it
#: (past 4,300 digits the conversion itself raises, which must not become a 500).
MAX_INTEGER_DIGITS = 100


def _reject_constant(name: str) -> Any:
    bad_request("invalid_json", f"{name} is not valid JSON.")


def _parse_int(digits: str) -> int:
    if len(digits) > MAX_INTEGER_DIGITS:
        bad_request(
            "invalid_json", f"Numbers of more than {MAX_INTEGER_DIGITS} digits are refused."
        )
    return int(digits)


#: Built once: `json.loads` with options builds a new decoder (and scanner) on every call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_int=_parse_int)


def _check_text(value: Any) -> None:
    """JSON may carry lone surrogates (`"\\ud800"`); they are not text and cannot be stored.

    Iterative, so a deeply nested body cannot exhaust the stack.
    """
    pending: list[tuple[Any, str]] = [(value, "The body")]
    while pending:
        item, where = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                bad_request(
                    "invalid_text",
                    f"{where} contains an unpaired surrogate escape, which is not valid text.",
                )
        elif isinstance(item, dict):
            for key, child in item.items():
                pending.append((key, "A field name"))
                inner = f"The field {key[:40]!r}" if where == "The body" else where
                pending.append((child, inner))
        elif isinstance(item, list):
            pending.extend((child, where) for child in item)


def check_content_length(request: web.Request, limit: int) -> None:
    """Refuse a declared oversize body before reading a byte of it."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "too_large", f"The request body must be at most {limit} bytes.")


def is_json_content_type(request: web.Request) -> bool:
    """`application/json`, optionally with `charset=utf-8` (the only charset JSON may use)."""
    if request.content_type != "application/json":
        return False
    charset = request.charset
    return charset is None or charset.lower().replace("_", "-") in ("utf-8", "utf8")


async def read_json_object(request: web.Request, *, required: bool) -> dict[str, Any]:
    """Read a JSON object body, strictly: UTF-8, no NaN, no lone surrogates.

    `required=False` (creating a conversation) accepts an empty body whatever its
    Content-Type, and a JSON body without one, so a bare `curl -X POST` works.
    """
    has_content_type = hdrs.CONTENT_TYPE in request.headers
    if required and not is_json_content_type(request):
        raise ApiError(415, "unsupported_media_type", _SEND_JSON)
    try:
        if request.content.is_eof():
            # The whole body came with the headers (a chat message always does): nothing to
            # wait for, so no timer to arm and cancel on every request.
            raw = await request.read()
        else:
            async with asyncio.timeout(BODY_READ_TIMEOUT_SECONDS):
                raw = await request.read()  # client_max_size turns an oversize body into 413
    except TimeoutError:
        raise ApiError(
            408,
            "request_timeout",
            "The request body came too slowly. Please try again.",
            headers={hdrs.CONNECTION: "close"},
        ) from None
    if not raw.strip():
        if required:
            bad_request("empty_body", "The request body is empty; send a JSON object.")
        return {}
    if not required and has_content_type and not is_json_content_type(request):
        # (A required body's Content-Type was checked above.)
        raise ApiError(415, "unsupported_media_type", _SEND_JSON)
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        bad_request("invalid_utf8", "The request body is not valid UTF-8.")
    try:
        data = _DECODER.decode(decoded)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        bad_request("invalid_json", "The request body is not valid JSON.")
    if not isinstance(data, dict):
        bad_request("invalid_body", "The request body must be a JSON object.")
    if b"\\u" in raw:
        # Valid UTF-8 cannot encode a surrogate, so only a `\u` escape can make one: a body
        # without any (nearly every chat message) needs no walk through its values.
        _check_text(data)
    return data
