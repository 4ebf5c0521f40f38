"""The web chat API over real HTTP on loopback: contract fields, every error code, headers."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from bot.app import build_catalogs
from bot.config import Settings
from bot.engine.types import COMMANDS
from tests.conftest import Api, ApiResult, RunningServer

CREATE_FIELDS = {
    "conversation_id",
    "token",
    "locale",
    "dir",
    "step",
    "messages",
    "done",
    "reference",
}
TURN_FIELDS = CREATE_FIELDS - {"token"}


def assert_error(result: ApiResult, status: int, code: str | None = None) -> None:
    """Every error has the one JSON shape, whatever produced it."""
    assert result.status == status, (result.status, result.body)
    assert result.headers["Content-Type"].startswith("application/json")
    assert set(result.body) == {"error"}
    assert set(result.body["error"]) == {"code", "message"}
    assert result.body["error"]["message"]
    if code is not None:
        assert result.body["error"]["code"] == code


# ---------------------------------------------------------------------- creating


async def test_create_returns_the_contract_fields(api: Api) -> None:
    created = await api.create()
    assert created.status == 201
    assert set(created.body) == CREATE_FIELDS
    assert uuid.UUID(created.body["conversation_id"])
    assert len(created.body["token"]) >= 32
    assert created.body["locale"] == "en"
    assert created.body["dir"] == "ltr"
    assert created.body["step"] == "welcome"
    assert created.body["done"] is False
    assert created.body["reference"] is None
    last = created.body["messages"][-1]
    assert set(last) == {"text", "choices", "input"}
    assert {c["id"] for c in last["choices"]} >= {"start", "privacy", "language"}
    assert any("999" in m["text"] for m in created.body["messages"])
    assert created.headers["Cache-Control"] == "no-store"
    assert created.headers["X-Content-Type-Options"] == "nosniff"


async def test_create_without_body_or_content_type(api: Api) -> None:
    created = await api.request("POST", "/api/v1/conversations")
    assert created.status == 201
    assert created.body["locale"] == "en"
    octets = await api.request("POST", "/api/v1/conversations", data=b"")
    assert octets.status == 201


async def test_create_locale_from_body(api: Api, app_server: RunningServer) -> None:
    expected = build_catalogs(app_server.settings).negotiate("pl")
    created = await api.create({"locale": "pl"})
    assert created.status == 201
    assert created.body["locale"] == expected


async def test_create_locale_from_accept_language(api: Api, app_server: RunningServer) -> None:
    header = "pl-PL,pl;q=0.9"
    expected = build_catalogs(app_server.settings).negotiate(header)
    created = await api.create(headers={"Accept-Language": header})
    assert created.body["locale"] == expected


async def test_body_locale_wins_over_accept_language(api: Api) -> None:
    created = await api.create({"locale": "en"}, headers={"Accept-Language": "pl"})
    assert created.body["locale"] == "en"


@pytest.mark.parametrize("locale", ["xx", "zz-ZZ", "", "en-GB", "a" * 500])
async def test_unsupported_locale_falls_back(api: Api, locale: str) -> None:
    created = await api.create({"locale": locale})
    assert created.status == 201
    assert created.body["locale"] == "en"


@pytest.mark.parametrize("body", [{"locale": 5}, {"locale": ["pl"]}, [], "pl"])
async def test_create_rejects_malformed_body(api: Api, body: Any) -> None:
    assert_error(await api.create(body), 400)


async def test_create_rejects_non_json(api: Api) -> None:
    result = await api.request(
        "POST",
        "/api/v1/conversations",
        data=b"locale=pl",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(result, 415, "unsupported_media_type")


# ---------------------------------------------------------------------- one turn


async def test_message_turn_and_invalid_answer_is_a_normal_turn(api: Api) -> None:
    conversation = await api.new_conversation()
    turn = await api.send(conversation, {"choice": "start"})
    assert turn.status == 200
    assert set(turn.body) == TURN_FIELDS
    assert turn.body["step"] == "experience"
    wrong = await api.send(conversation, {"choice": "no-such-choice"})
    assert wrong.status == 200
    assert wrong.body["step"] == "experience"
    typed = await api.send(conversation, {"text": "something unrelated"})
    assert typed.status == 200
    assert typed.body["step"] == "experience"


@pytest.mark.parametrize("command", COMMANDS)
async def test_every_command_is_accepted(api: Api, command: str) -> None:
    conversation = await api.new_conversation()
    await api.send(conversation, {"choice": "start"})
    result = await api.send(conversation, {"command": command})
    assert result.status == 200
    assert set(result.body) == (TURN_FIELDS | {"exit"} if command == "exit" else TURN_FIELDS)


@pytest.mark.parametrize(("locale", "word"), [("en", "exit"), ("en", "/exit"), ("pl", "wyjdź")])
async def test_the_typed_exit_word_says_exit_true_and_keeps_nothing(
    api: Api, locale: str, word: str
) -> None:
    conversation = dict((await api.create({"locale": locale})).body)
    await api.send(conversation, {"choice": "start"})
    await api.send(conversation, {"choice": "poor"})
    result = await api.send(conversation, {"text": word})
    assert result.status == 200
    assert result.body["exit"] is True and result.body["done"] is True
    # The reply says nothing of what the chat was about.
    assert [m["text"] for m in result.body["messages"]] == [
        "Chat closed." if locale == "en" else "Czat zamknięty."
    ]
    other = await api.send(conversation, {"text": "cancel"})
    assert "exit" not in other.body  # only the turn that exits says so


async def test_only_the_exit_turn_carries_exit(api: Api) -> None:
    conversation = await api.new_conversation()
    turn = await api.send(conversation, {"choice": "start"})
    assert "exit" not in turn.body
    cancelled = await api.send(conversation, {"command": "cancel"})
    assert "exit" not in cancelled.body


async def test_charset_parameter_is_accepted(api: Api) -> None:
    conversation = await api.new_conversation()
    result = await api.send(
        conversation,
        None,
        data=b'{"choice": "start"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert result.status == 200
    assert result.body["step"] == "experience"


# ---------------------------------------------------------------------- 400


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"text": "unterminated', "invalid_json"),
        (b"", "empty_body"),
        (b'{"text": NaN}', "invalid_json"),
        (b'{"text": "caf\xe9"}', "invalid_utf8"),
        (b'\xff\xfe{"text": "x"}', "invalid_utf8"),
        (b'{"text": "\\ud800"}', "invalid_text"),
        (b'{"text": "a\\udfffb"}', "invalid_text"),
        (b'{"text": "ok", "\\ud800": 1}', "invalid_text"),
        (b'{"text": "ok", "extra": {"deep": ["x", "\\udc00"]}}', "invalid_text"),
        (b'["text", "hello"]', "invalid_body"),
        (b'"hello"', "invalid_body"),
        (b"null", "invalid_body"),
        (b"[" * 5000 + b"]" * 5000, "invalid_json"),
    ],
)
async def test_malformed_bodies_are_400(api: Api, raw: bytes, code: str) -> None:
    conversation = await api.new_conversation()
    result = await api.send(
        conversation, None, data=raw, headers={"Content-Type": "application/json"}
    )
    assert_error(result, 400, code)
    # Nothing happened to the conversation.
    assert (await api.view(conversation)).body["step"] == "welcome"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_message"),
        ({"client_message_id": "m1"}, "invalid_message"),
        ({"text": "a", "choice": "start"}, "invalid_message"),
        ({"text": "a", "command": "back"}, "invalid_message"),
        ({"text": 5}, "invalid_text"),
        ({"text": None}, "invalid_text"),
        ({"text": ["a"]}, "invalid_text"),
        ({"choice": 1}, "invalid_choice"),
        ({"choice": ""}, "invalid_choice"),
        ({"choice": {"id": "start"}}, "invalid_choice"),
        ({"command": "delete_everything"}, "unknown_command"),
        ({"command": "/back"}, "unknown_command"),
        ({"command": True}, "invalid_command"),
        ({"choice": "start", "client_message_id": 7}, "invalid_client_message_id"),
        ({"choice": "start", "client_message_id": ""}, "invalid_client_message_id"),
        ({"choice": "start", "client_message_id": "x" * 101}, "invalid_client_message_id"),
        ({"choice": "start", "client_message_id": "a\nb"}, "invalid_client_message_id"),
    ],
)
async def test_wrong_fields_are_400(api: Api, body: dict[str, Any], code: str) -> None:
    conversation = await api.new_conversation()
    assert_error(await api.send(conversation, body), 400, code)


async def test_any_unicode_text_is_accepted(api: Api) -> None:
    conversation = await api.new_conversation()
    result = await api.send(conversation, {"text": "Zażółć gęślą jaźń — شكرا — 🙂 — 你好"})
    assert result.status == 200


# ---------------------------------------------------------------------- 401, 404


async def test_missing_token_is_401(api: Api) -> None:
    conversation = await api.new_conversation()
    path = f"/api/v1/conversations/{conversation['conversation_id']}"
    for method, suffix in (("POST", "/messages"), ("GET", "")):
        result = await api.request(method, path + suffix, json={"choice": "start"})
        assert_error(result, 401, "unauthorized")
        assert result.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abcdefghijklmnopqrstuvwxyz", "Bearer a b c"],
)
async def test_malformed_authorization_is_401(api: Api, authorization: str) -> None:
    conversation = await api.new_conversation()
    path = f"/api/v1/conversations/{conversation['conversation_id']}/messages"
    result = await api.request(
        "POST", path, json={"choice": "start"}, headers={"Authorization": authorization}
    )
    assert_error(result, 401, "unauthorized")


async def test_wrong_token_is_401(api: Api) -> None:
    mine = await api.new_conversation()
    other = await api.new_conversation()
    stolen = {**mine, "token": other["token"]}
    assert_error(await api.send(stolen, {"choice": "start"}), 401, "unauthorized")
    assert_error(await api.view(stolen), 401, "unauthorized")
    assert (await api.view(mine)).body["step"] == "welcome"


async def test_unknown_conversation_is_404(api: Api) -> None:
    conversation = await api.new_conversation()
    unknown = {**conversation, "conversation_id": str(uuid.uuid4())}
    assert_error(await api.send(unknown, {"choice": "start"}), 404, "not_found")
    assert_error(await api.view(unknown), 404, "not_found")


@pytest.mark.parametrize(
    "conversation_id",
    ["not-a-uuid", "1", "%7B" + str(uuid.UUID(int=1)) + "%7D", uuid.UUID(int=5).hex, "' OR 1=1 --"],
)
async def test_malformed_conversation_id_is_404(api: Api, conversation_id: str) -> None:
    conversation = await api.new_conversation()
    malformed = {**conversation, "conversation_id": conversation_id}
    assert_error(await api.send(malformed, {"choice": "start"}), 404, "not_found")


async def test_unknown_api_route_is_json_404(api: Api) -> None:
    assert_error(await api.request("GET", "/api/v1/nothing"), 404, "not_found")
    assert_error(await api.request("POST", "/api/v2/conversations", json={}), 404)


async def test_wrong_method_is_json_405(api: Api) -> None:
    result = await api.request("DELETE", "/api/v1/conversations")
    assert_error(result, 405, "method_not_allowed")
    assert "POST" in result.headers["Allow"]


# ---------------------------------------------------------------------- 413, 415


async def test_body_over_the_limit_is_413(api: Api) -> None:
    conversation = await api.new_conversation()
    big = {"text": "x" * 300_000}
    assert_error(await api.send(conversation, big), 413, "too_large")


async def test_chunked_body_over_the_limit_is_413(api: Api) -> None:
    """Without a Content-Length the limit is enforced while reading (aiohttp's own 413)."""
    conversation = await api.new_conversation()

    async def chunks() -> Any:
        for _ in range(30):
            yield b'{"text": "' + b"x" * 10_000
        yield b'"}'

    result = await api.send(
        conversation, None, data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(result, 413, "too_large")


async def test_text_just_under_the_limit_is_a_normal_turn(api: Api) -> None:
    """Per-step length limits are the dialogue's: a 200 with a re-prompt, not an HTTP error."""
    conversation = await api.new_conversation()
    result = await api.send(conversation, {"text": "x" * 60_000})
    assert result.status == 200


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
async def test_not_json_is_415(api: Api, content_type: str) -> None:
    conversation = await api.new_conversation()
    result = await api.send(
        conversation, None, data=b'{"choice": "start"}', headers={"Content-Type": content_type}
    )
    assert_error(result, 415, "unsupported_media_type")


async def test_missing_content_type_is_415(api: Api) -> None:
    conversation = await api.new_conversation()
    result = await api.send(conversation, None)
    assert_error(result, 415, "unsupported_media_type")


# ---------------------------------------------------------------------- 429


async def test_new_conversations_are_limited_per_address(start_server: Any, client: Any) -> None:
    server = await start_server(new_conversations_per_minute=3)
    api = Api(client, server.base_url)
    results = [await api.create() for _ in range(4)]
    assert [r.status for r in results[:3]] == [201, 201, 201]
    assert_error(results[3], 429, "rate_limited")
    assert 1 <= int(results[3].headers["Retry-After"]) <= 60
    # Turns of the conversations already open are not limited per address.
    for created in results[:3]:
        assert (await api.send(created.body, {"choice": "start"})).status == 200
    # Liveness is never rate limited.
    assert (await api.request("GET", "/healthz")).status == 200


async def test_new_conversations_have_a_total_budget(start_server: Any, client: Any) -> None:
    """Addresses rotate for free (IPv6): a budget for everyone together still holds."""
    server = await start_server(
        new_conversations_total_per_minute=3, trusted_proxies=("127.0.0.1",)
    )
    api = Api(client, server.base_url)
    results = [await api.create(headers={"X-Forwarded-For": f"2001:db8:{n}::1"}) for n in range(4)]
    assert [r.status for r in results[:3]] == [201, 201, 201]
    assert_error(results[3], 429, "rate_limited")
    assert "Retry-After" in results[3].headers


async def test_a_crowd_behind_one_address_can_all_start_and_talk(
    app_server: RunningServer, client: Any
) -> None:
    """50 people behind one carrier NAT or hospital address, with the default limits."""
    api = Api(client, app_server.base_url)

    async def person() -> list[int]:
        created = await api.create()
        statuses = [created.status]
        for message in ({"choice": "start"}, {"choice": "good"}, {"choice": "gp"}):
            statuses.append((await api.send(created.body, message)).status)
        statuses.append((await api.view(created.body)).status)
        return statuses

    results = await asyncio.gather(*(person() for _ in range(50)))
    assert all(statuses == [201, 200, 200, 200, 200] for statuses in results)


async def test_rate_limit_per_person_in_a_conversation(start_server: Any, client: Any) -> None:
    server = await start_server(rate_limit_per_minute=3)
    api = Api(client, server.base_url)
    conversation = await api.new_conversation()
    for message in ({"choice": "start"}, {"choice": "good"}):
        assert (await api.send(conversation, message)).status == 200
    assert (await api.view(conversation)).status == 200
    limited = await api.send(conversation, {"choice": "gp"})
    assert_error(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    other = await api.new_conversation()
    assert (await api.send(other, {"choice": "start"})).status == 200


async def test_a_wrong_token_cannot_throttle_the_owner(start_server: Any, client: Any) -> None:
    server = await start_server(rate_limit_per_minute=3)
    api = Api(client, server.base_url)
    conversation = await api.new_conversation()
    forged = {**conversation, "token": "A" * 43}
    statuses = [(await api.send(forged, {"choice": "start"})).status for _ in range(6)]
    assert statuses[:3] == [401, 401, 401] and set(statuses[3:]) == {429}
    assert (await api.send(conversation, {"choice": "start"})).status == 200


# ---------------------------------------------------------------------- CORS


ALLOWED = "https://widget-host.example"


async def test_cors_allowed_origin(start_server: Any, client: Any) -> None:
    server = await start_server(allowed_origins=(ALLOWED,))
    api = Api(client, server.base_url)
    created = await api.create(headers={"Origin": ALLOWED})
    assert created.status == 201
    assert created.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "Origin" in created.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in created.headers
    # Errors can be read by the widget too.
    error = await api.send(created.body, {"command": "nope"}, headers={"Origin": ALLOWED})
    assert_error(error, 400)
    assert error.headers["Access-Control-Allow-Origin"] == ALLOWED


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://widget-host.example",
        "https://widget-host.example:8443",
        "null",
    ],
)
async def test_cors_refused_origin(start_server: Any, client: Any, origin: str) -> None:
    server = await start_server(allowed_origins=(ALLOWED,))
    api = Api(client, server.base_url)
    result = await api.create(headers={"Origin": origin})
    assert_error(result, 403, "origin_not_allowed")
    assert "Access-Control-Allow-Origin" not in result.headers


async def test_cors_preflight(start_server: Any, client: Any) -> None:
    server = await start_server(allowed_origins=(ALLOWED,))
    api = Api(client, server.base_url)
    path = f"/api/v1/conversations/{uuid.uuid4()}/messages"
    headers = {
        "Origin": ALLOWED,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization",
    }
    result = await api.request("OPTIONS", path, headers=headers)
    assert result.status == 204
    assert result.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "POST" in result.headers["Access-Control-Allow-Methods"]
    allowed_headers = result.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed_headers
    assert "content-type" in allowed_headers
    assert int(result.headers["Access-Control-Max-Age"]) > 0
    refused = await api.request(
        "OPTIONS", path, headers={**headers, "Origin": "https://evil.example"}
    )
    assert_error(refused, 403, "origin_not_allowed")


async def test_no_origin_and_same_origin_are_allowed(api: Api, app_server: RunningServer) -> None:
    assert (await api.create()).status == 201
    same = await api.create(headers={"Origin": app_server.base_url})
    assert same.status == 201


# ---------------------------------------------------------------------- storage failures


class SwitchableStorage:
    """The real storage, whose database can be swapped for an unusable one mid-test."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)

    def unit_of_work(self) -> Any:
        return self.target.unit_of_work()

    async def ping(self) -> None:
        await self.target.ping()

    async def close(self) -> None:
        await self.target.close()


async def test_database_down_is_503_and_retry_is_safe(
    start_server: Any, client: Any, server_settings: Settings, tmp_path: Any
) -> None:
    from bot.app import build_engine
    from bot.intake.lookups import DirectoryLookup
    from bot.intake.service import IntakeService
    from storage import create_storage, upgrade
    from tests.conftest import settle_aiosqlite_threads

    await upgrade(server_settings.database_url)
    real = await create_storage(server_settings.database_url)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the database directory should be")
    broken = await create_storage(f"sqlite+aiosqlite:///{blocker / 'intake.db'}")
    storage = SwitchableStorage(real)
    catalogs = build_catalogs(server_settings)
    service = IntakeService(
        storage,
        build_engine(catalogs, server_settings),
        catalogs,
        DirectoryLookup(real.directory),  # type: ignore[arg-type]
    )
    server = await start_server(service=service)
    api = Api(client, server.base_url)
    try:
        conversation = await api.new_conversation()
        assert (await api.request("GET", "/readyz")).status == 200

        storage.target = broken
        failed = await api.send(conversation, {"choice": "start", "client_message_id": "m-1"})
        assert_error(failed, 503, "storage_unavailable")
        assert int(failed.headers["Retry-After"]) >= 1
        assert_error(await api.request("GET", "/readyz"), 503)
        assert (await api.request("GET", "/healthz")).status == 200

        storage.target = real
        retried = await api.send(conversation, {"choice": "start", "client_message_id": "m-1"})
        assert retried.status == 200
        assert retried.body["step"] == "experience"
        view = await api.view(conversation)
        assert [e for e in view.body["transcript"] if e["role"] == "user"] != []
        assert len([e for e in view.body["transcript"] if e["role"] == "user"]) == 1
        assert (await api.request("GET", "/readyz")).status == 200
    finally:
        await broken.close()
        await real.close()
        await settle_aiosqlite_threads()


# ---------------------------------------------------------------------- health, page, files


async def test_healthz_and_readyz(api: Api) -> None:
    health = await api.request("GET", "/healthz")
    assert health.status == 200
    assert health.body == {"status": "ok"}
    ready = await api.request("GET", "/readyz")
    assert ready.status == 200
    assert ready.headers["Cache-Control"] == "no-store"


async def test_page_has_strict_security_headers(api: Api) -> None:
    page = await api.request("GET", "/")
    assert page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    csp = page.headers["Content-Security-Policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert '<script src="/widget.js"' in page.body
    assert "<noscript>" in page.body


async def test_static_files_and_revalidation(api: Api) -> None:
    from bot.channels.web.static import STATIC_DIR

    if not (STATIC_DIR / "widget.js").exists():
        assert_error(await api.request("GET", "/widget.js"), 404, "not_found")
        return
    script = await api.request("GET", "/widget.js")
    assert script.status == 200
    assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert "max-age" in script.headers["Cache-Control"]
    again = await api.request(
        "GET", "/widget.js", headers={"If-None-Match": script.headers["ETag"]}
    )
    assert again.status == 304


@pytest.mark.parametrize(
    "path",
    ["/../pyproject.toml", "/%2e%2e/app.py", "/..%2fapp.py", "/app.py", "/.hidden.js", "/nope.js"],
)
async def test_no_files_outside_static(api: Api, path: str) -> None:
    result = await api.request("GET", path)
    assert result.status in (400, 404)
    assert "import" not in str(result.body)


# ---------------------------------------------------------------------- failures and logs


async def test_unexpected_exception_is_a_bare_json_500(
    api: Api, app_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.appkeys import SERVICE

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals: /etc/passwd SELECT * FROM reports")

    conversation = await api.new_conversation()
    monkeypatch.setattr(app_server.app[SERVICE], "handle", broken)
    result = await api.send(conversation, {"choice": "start"})
    assert_error(result, 500, "internal_error")
    assert "secret" not in str(result.body)


async def test_logs_hold_no_bodies_tokens_or_ids(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    conversation = await api.new_conversation()
    await api.send(conversation, {"choice": "start"})
    await api.send(conversation, {"text": "Marker-Zebra-42 my phone is 07700900123"})
    await api.send(conversation, {"command": "nope"})
    await api.view(conversation)
    # Our own loggers (third-party DEBUG output such as aiosqlite's is the deployment's to mute).
    ours = [r for r in caplog.records if r.name.split(".")[0] in ("bot", "storage", "aiohttp")]
    logged = "\n".join(r.getMessage() for r in ours)
    assert "POST /api/v1/conversations/{conversation_id}/messages 200" in logged
    assert "POST /api/v1/conversations/{conversation_id}/messages 400" in logged
    for secret in (
        "Marker-Zebra",
        "07700900123",
        conversation["token"],
        conversation["conversation_id"],
    ):
        assert secret not in logged


# ---------------------------------------------------------------------- JSON bodies


async def test_bodies_are_compact_utf8_json_that_reads_back_as_sent(api: Api) -> None:
    """Answers are encoded by `bot.jsonenc`: UTF-8 as it is (right-to-left script and emoji
    not escaped), and what the person typed (markup, quotes, backslashes) reads back exactly."""
    typed = 'שלום مرحبا 😀 <b>bold</b> & <script>x</script> "quoted" back\\slash'
    created = await api.create({"locale": "ar"})
    conversation = created.body
    await api.send(conversation, {"choice": "start"})
    await api.send(conversation, {"text": typed})
    path = f"/api/v1/conversations/{conversation['conversation_id']}"
    headers = {"Authorization": f"Bearer {conversation['token']}"}
    async with api.session.get(api.base_url + path, headers=headers) as response:
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        raw = await response.read()
    body = json.loads(raw)
    assert body["dir"] == "rtl" and body["locale"] == "ar"
    assert typed in [entry["text"] for entry in body["transcript"] if entry["role"] == "user"]
    arabic = body["messages"][0]["text"]
    assert any("\u0600" <= ch <= "\u06ff" for ch in arabic)
    assert arabic.encode() in raw and typed.encode()[:10] in raw  # not \\u escapes
    assert b'", "' not in raw and b'": ' not in raw  # compact
