"""The web chat channel: a small JSON API for the widget, plus the page and its files.

The handlers only translate HTTP to `Inbound` and `Reply` to JSON; the dialogue, idempotency
and durability are the service's. Guards run in middlewares so that every response, error
or not, has the same headers and the same error shape (see `web_http`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from aiohttp import hdrs, web

from bot.appkeys import SERVICE, SETTINGS, STORAGE
from bot.channels.web.guard import (
    OriginPolicy,
    client_address,
    cors_preflight,
    enforce,
    network_key,
    parse_networks,
)
from bot.channels.web.http import (
    CORS_ORIGIN,
    ApiError,
    Handler,
    access_log_middleware,
    bad_request,
    check_content_length,
    error_middleware,
    json_response,
    quiet_client_errors_in_server_log,
    read_json_object,
)
from bot.channels.web.openapi import OPENAPI_PATH, get_openapi
from bot.channels.web.static import FILE_PATTERN, StaticFiles, add_security_headers
from bot.channels.web.ui_text import UI_TEXT_PATH, cache_ui_text, get_ui_text
from bot.channels.web.wire import reply_body
from bot.engine.types import COMMANDS, Inbound
from bot.intake.service import InvalidToken, SurveyNotOffered, hash_token
from bot.ports import StorageError
from bot.ratelimit import TokenBuckets

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
CONVERSATIONS = "/api/v1/conversations"
CONVERSATION = "/api/v1/conversations/{conversation_id}"
MESSAGES = "/api/v1/conversations/{conversation_id}/messages"

MAX_CLIENT_MESSAGE_ID = 100
#: Choice ids are short identifiers (or directory location ids); anything longer is not one.
MAX_CHOICE_LENGTH = 200
#: Locale codes and Accept-Language values longer than this are not real ones.
MAX_LOCALE_HINT = 200
READY_TIMEOUT_SECONDS = 2.0
#: A connection whose request headers have not all arrived this long after it opened (or
#: after its previous answer) is closed: aiohttp's keepalive timer covers exactly that.
HEADER_READ_TIMEOUT_SECONDS = 15.0
#: Options for the aiohttp server that runs this app (`web.run_app(app, **SERVER_OPTIONS)`).
SERVER_OPTIONS: dict[str, Any] = {"keepalive_timeout": HEADER_READ_TIMEOUT_SECONDS}
#: A web conversation nobody answered within this long is deleted (see `sweep_untouched`).
UNTOUCHED_MAX_AGE = timedelta(hours=1)
SWEEP_INTERVAL_SECONDS = 60.0

_BEARER = re.compile(r"Bearer[ ]+([A-Za-z0-9_\-]{16,200})[ ]*", re.IGNORECASE)
_INPUT_FIELDS = ("text", "choice", "command")
#: `str(uuid.UUID(...))`'s form, upper case allowed (matched without building a UUID).
_CANONICAL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)

ORIGIN_POLICY = web.AppKey("web_origin_policy", OriginPolicy)
TRUSTED_PROXIES: web.AppKey[tuple[IPv4Network | IPv6Network, ...]] = web.AppKey(
    "web_trusted_proxies"
)
#: Turns and views, per conversation and token: the token identifies the person, so someone
#: who only knows a conversation id spends their own bucket, never its owner's.
PERSON_LIMITER = web.AppKey("web_person_limiter", TokenBuckets)
#: New conversations per client address (IPv6: per /64), and from everyone together.
NEW_BY_ADDRESS_LIMITER = web.AppKey("web_new_by_address_limiter", TokenBuckets)
NEW_TOTAL_LIMITER = web.AppKey("web_new_total_limiter", TokenBuckets)


def setup(app: web.Application) -> None:
    """Register the web channel's routes, middlewares and response headers on `app`."""
    settings = app[SETTINGS]
    app[ORIGIN_POLICY] = OriginPolicy(settings.allowed_origins)
    app[TRUSTED_PROXIES] = parse_networks(settings.trusted_proxies)
    app[PERSON_LIMITER] = TokenBuckets.per_minute(settings.rate_limit_per_minute)
    app[NEW_BY_ADDRESS_LIMITER] = TokenBuckets.per_minute(settings.new_conversations_per_minute)
    app[NEW_TOTAL_LIMITER] = TokenBuckets.per_minute(
        settings.new_conversations_total_per_minute, max_keys=1
    )
    # First is outermost: the log sees the final status; errors are shaped before logging.
    app.middlewares.extend([access_log_middleware, error_middleware, api_guard_middleware])
    app.on_response_prepare.append(_on_response_prepare)
    app.on_response_prepare.append(cache_ui_text)  # after the above: it relaxes no-store
    app.cleanup_ctx.append(_sweeper)  # after the composition root's: the service exists
    quiet_client_errors_in_server_log()

    static = StaticFiles()
    app.router.add_post(CONVERSATIONS, create_conversation)
    app.router.add_post(MESSAGES, post_message)
    app.router.add_get(CONVERSATION, get_conversation, allow_head=False)
    app.router.add_get(UI_TEXT_PATH, get_ui_text, allow_head=False)
    app.router.add_get(OPENAPI_PATH, get_openapi, allow_head=False)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", static.index)
    app.router.add_get("/{name:" + FILE_PATTERN + "}", static.file)


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(sweep_untouched(app), name="sweep-untouched-conversations")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def sweep_untouched(app: web.Application) -> None:
    """Every worker, every minute: delete web conversations that were opened an hour ago or
    more and never answered (with the limits on new conversations this bounds what a flood of
    empty ones from rotating addresses can leave in the database), and erase what was typed
    in conversations that ended an hour ago or more (`IntakeService.erase_finished`), and
    forget chat message ids older than a bot may delete (`purge_chat_messages`, 48 hours)."""
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_SECONDS)
        try:
            deleted = await app[SERVICE].purge_untouched(UNTOUCHED_MAX_AGE)
            erased = await app[SERVICE].erase_finished()
            await app[SERVICE].purge_chat_messages()
        except StorageError:
            log.warning("could not sweep old conversations; will try again")
        else:
            if deleted or erased:
                log.info(
                    "deleted %d untouched web conversations; erased %d finished ones",
                    deleted,
                    erased,
                )


# ---------------------------------------------------------------------- middleware


@web.middleware
async def api_guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """For /api only: origin check and preflight, then body size. Rate limits are the
    handlers': per person for turns and views, per address only for new conversations."""
    if not request.path.startswith(API_PREFIX):
        return await handler(request)
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None:
        if not request.app[ORIGIN_POLICY].is_allowed(request, origin):
            raise ApiError(403, "origin_not_allowed", "This site may not use the chat service.")
        request[CORS_ORIGIN] = origin
    if request.method == hdrs.METH_OPTIONS and _route_exists(request):
        if origin is None:
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
        return cors_preflight(request, origin)
    check_content_length(request, request.app[SETTINGS].max_body_bytes)
    return await handler(request)


def _route_exists(request: web.Request) -> bool:
    """The path names an API resource (whatever the method): unknown paths stay 404."""
    exc = request.match_info.http_exception
    return exc is None or exc.status == 405


async def _on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    add_security_headers(request, response)
    is_api = request.path.startswith(API_PREFIX)
    if is_api or request.path in ("/healthz", "/readyz"):
        response.headers[hdrs.CACHE_CONTROL] = "no-store"
    if is_api:
        _add_vary_origin(response)
        origin = request.get(CORS_ORIGIN)
        if origin is not None:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = hdrs.RETRY_AFTER


def _add_vary_origin(response: web.StreamResponse) -> None:
    vary = response.headers.get(hdrs.VARY, "")
    if "origin" not in vary.lower():
        response.headers[hdrs.VARY] = f"{vary}, Origin" if vary else "Origin"


# ---------------------------------------------------------------------- the API


async def create_conversation(request: web.Request) -> web.Response:
    """201 with the welcome and a token that is shown once and stored only as a hash."""
    trusted: tuple[Any, ...] = request.app[TRUSTED_PROXIES]
    address = client_address(request, trusted)
    enforce(
        request.app[NEW_BY_ADDRESS_LIMITER],
        network_key(address),
        "Too many new conversations from this address. Please wait a moment and try again.",
    )
    enforce(
        request.app[NEW_TOTAL_LIMITER],
        "",
        "Too many people are starting a conversation just now. Please try again in a moment.",
    )
    body = await read_json_object(request, required=False)
    locale = body.get("locale")
    if locale is not None and not isinstance(locale, str):
        bad_request("invalid_locale", 'locale must be a string such as "en" or "pl".')
    survey_for = body.get("survey_for")
    if survey_for is not None:
        return await _start_survey(request, survey_for)
    accept_language = request.headers.get(hdrs.ACCEPT_LANGUAGE)
    hints = tuple(h[:MAX_LOCALE_HINT] if h else None for h in (locale, accept_language))
    reply = await request.app[SERVICE].start(channel="web", locale_hints=hints, with_token=True)
    return json_response(reply_body(reply), status=201)


async def _start_survey(request: web.Request, survey_for: Any) -> web.Response:
    """`{"survey_for": id}` with that conversation's token: the survey about the chat it
    offered, as a new conversation with its own token (in the offered one's language)."""
    if not isinstance(survey_for, str):
        bad_request("invalid_survey_for", '"survey_for" must be a conversation id.')
    token = _bearer_token(request)
    try:
        conversation_id = _parse_conversation_id(survey_for)
        reply = await request.app[SERVICE].start_survey(
            conversation_id, token=token, with_token=True
        )
    except (ApiError, SurveyNotOffered):
        raise ApiError(
            409,
            "survey_not_offered",
            "There is no survey to answer for that conversation (it was taken, declined or "
            "has closed).",
        ) from None
    return json_response(reply_body(reply), status=201)


async def post_message(request: web.Request) -> web.Response:
    """One turn. An invalid answer is a normal 200 with a re-prompt, never an HTTP error."""
    conversation_id, token = _credentials(request)
    _enforce_person_limit(request, conversation_id, token)
    body = await read_json_object(request, required=True)
    inbound = parse_inbound(body)
    message_id = parse_client_message_id(body)
    try:
        reply = await request.app[SERVICE].handle(
            conversation_id, inbound, message_id=message_id, token=token
        )
    except InvalidToken:
        raise _unauthorized("The token does not match this conversation.") from None
    return json_response(reply_body(reply))


async def get_conversation(request: web.Request) -> web.Response:
    """The current step and the transcript, so a reloaded page resumes where it stopped."""
    conversation_id, token = _credentials(request)
    _enforce_person_limit(request, conversation_id, token)
    try:
        reply = await request.app[SERVICE].view(conversation_id, with_transcript=True, token=token)
    except InvalidToken:
        raise _unauthorized("The token does not match this conversation.") from None
    return json_response(reply_body(reply))


def parse_inbound(body: dict[str, Any]) -> Inbound:
    """Exactly one of text, choice or command."""
    present = [name for name in _INPUT_FIELDS if name in body]
    if len(present) != 1:
        bad_request(
            "invalid_message",
            'Send exactly one of "text", "choice" or "command".',
        )
    kind = present[0]
    value = body[kind]
    if not isinstance(value, str):
        bad_request(f"invalid_{kind}", f'"{kind}" must be a string.')
    if kind == "command" and value not in COMMANDS:
        bad_request(
            "unknown_command",
            f'"command" must be one of: {", ".join(COMMANDS)}.',
        )
    if kind == "choice" and not 0 < len(value) <= MAX_CHOICE_LENGTH:
        bad_request("invalid_choice", '"choice" must be a choice id from the last message.')
    # Dangerous characters (NUL, other controls, bidi overrides) are removed from every
    # field by the service, in one place for every channel (`bot.intake.service.clean_inbound`).
    return Inbound(kind, value)  # type: ignore[arg-type]


def parse_client_message_id(body: dict[str, Any]) -> str | None:
    """Optional; the client's retry key. Printable so it is safe to store and compare."""
    value = body.get("client_message_id")
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_CLIENT_MESSAGE_ID
        or not value.isprintable()
    ):
        bad_request(
            "invalid_client_message_id",
            f'"client_message_id" must be a printable string of 1 to {MAX_CLIENT_MESSAGE_ID} '
            "characters.",
        )
    return value


def _enforce_person_limit(request: web.Request, conversation_id: str, token: str) -> None:
    """Keyed by the conversation and the token presented: a wrong token spends its own bucket
    (and is then refused), so knowing an id is not enough to throttle its owner."""
    enforce(request.app[PERSON_LIMITER], f"{conversation_id}:{hash_token(token)[:32]}")


def _credentials(request: web.Request) -> tuple[str, str]:
    """404 for an id that cannot exist and 401 without a bearer token, both before the
    database; the token itself is checked by the service inside the turn's transaction.
    Returns the canonical conversation id and the token."""
    return _parse_conversation_id(request.match_info["conversation_id"]), _bearer_token(request)


def _parse_conversation_id(raw: str) -> str:
    """The id in the form we issue it (`str(uuid4())`), any case: 8-4-4-4-12 hex digits.
    Braces, "urn:uuid:" or no hyphens are valid for `uuid.UUID`, but never an id we issued."""
    if _CANONICAL_UUID.fullmatch(raw) is None:
        raise ApiError(404, "not_found", "There is no such conversation.")
    return raw.lower()


def _bearer_token(request: web.Request) -> str:
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is None:
        raise _unauthorized("Send the conversation's token as Authorization: Bearer <token>.")
    match = _BEARER.fullmatch(header)
    if match is None:
        raise _unauthorized("The Authorization header must be: Bearer <token>.")
    return match.group(1)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={hdrs.WWW_AUTHENTICATE: "Bearer"})


# ---------------------------------------------------------------------- health


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers. Never touches the database."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: only while the database answers, so a load balancer stops routing here."""
    storage = request.app.get(STORAGE)
    if storage is None:
        raise ApiError(503, "not_ready", "Starting up.")
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await storage.ping()
    except (StorageError, TimeoutError, OSError):
        raise ApiError(503, "not_ready", "The database is not answering.") from None
    return json_response({"status": "ok"})
