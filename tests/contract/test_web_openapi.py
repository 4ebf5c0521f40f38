"""The published OpenAPI document is served, and real answers of a running server match it:
a whole conversation to a stored report, a resumed view, and every documented error."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from bot.channels.web.openapi import DOCUMENT
from bot.config import DEFAULT_MAX_BODY_BYTES, Settings
from dialogs.intake import INTAKE
from tests.conftest import RunningServer, StartServer
from tests.contract.http_client import BlockingApi, finish

SCRIPT_TO_WHAT_HAPPENED = [
    {"choice": "start"},
    {"choice": "good"},
    {"choice": "gp"},
    {"text": "Qwxz Zzyq Nonexistent Surgery"},
    {"choice": "self"},
]


@pytest.fixture
async def blocking_api(app_server: RunningServer) -> BlockingApi:
    return BlockingApi(app_server.base_url)


async def test_the_document_is_served_and_is_openapi_3_1(blocking_api: BlockingApi) -> None:
    answer = await asyncio.to_thread(blocking_api.raw, "GET", "/api/v1/openapi.json")
    assert answer.status == 200
    assert answer.body == json.loads(json.dumps(DOCUMENT))
    assert answer.body["openapi"].startswith("3.1")
    message = answer.body["components"]["schemas"]["Message"]["properties"]
    assert {"links", "summary"} <= set(message)  # the additive fields, optional
    assert "links" not in answer.body["components"]["schemas"]["Message"]["required"]
    assert (
        "value" in message
        and "value" not in answer.body["components"]["schemas"]["Message"]["required"]
    )
    assert "summary" in answer.body["components"]["schemas"]["Reply"]["properties"]
    for name, schema in answer.body["components"]["schemas"].items():
        assert name and Draft202012Validator.check_schema(schema) is None  # valid 2020-12
    for path, operations in answer.body["paths"].items():
        for method, operation in operations.items():
            assert method in ("get", "post") and operation["responses"], (path, method)
            assert all(code.isdigit() for code in operation["responses"]), (path, method)


async def test_a_whole_conversation_matches_the_document(blocking_api: BlockingApi) -> None:
    def run() -> None:
        created = blocking_api.create({"locale": "cy"})
        assert created.status == 201
        conversation = created.body
        reference = finish(blocking_api, conversation)
        assert reference is not None
        view = blocking_api.view(conversation)
        assert view.status == 200 and view.body["reference"] == reference
        assert view.body["transcript"]

    await asyncio.to_thread(run)


async def test_every_error_matches_the_document(blocking_api: BlockingApi) -> None:
    """check_response (inside the client) fails on any undocumented status or shape."""

    def run() -> None:
        api = blocking_api
        conversation = api.create().body
        path = f"/api/v1/conversations/{conversation['conversation_id']}/messages"
        auth = {"Authorization": f"Bearer {conversation['token']}"}
        json_auth = {**auth, "Content-Type": "application/json"}
        assert api.raw("POST", path, b"{", json_auth).status == 400
        assert api.raw("POST", path, b'{"text": 1}', json_auth).status == 400
        assert (
            api.raw("POST", path, b'{"text": "x"}', {**auth, "Content-Type": "text/plain"}).status
            == 415
        )
        assert (
            api.raw("POST", path, b'{"text": "x"}', {"Content-Type": "application/json"}).status
            == 401
        )
        unknown = "/api/v1/conversations/00000000-0000-4000-8000-000000000000/messages"
        assert api.raw("POST", unknown, b'{"text": "x"}', json_auth).status == 404
        big = b'{"text": "' + b"a" * (DEFAULT_MAX_BODY_BYTES + 1) + b'"}'
        assert api.raw("POST", path, big, json_auth).status == 413
        assert api.raw("DELETE", path, None, auth).status == 405

    await asyncio.to_thread(run)


@pytest.mark.parametrize("digits", [4_301, 100_000])
async def test_a_huge_json_number_is_400_not_500(blocking_api: BlockingApi, digits: int) -> None:
    def run() -> None:
        conversation = blocking_api.create().body
        path = f"/api/v1/conversations/{conversation['conversation_id']}/messages"
        body = b'{"choice": "x", "n": ' + b"7" * digits + b"}"
        headers = {
            "Authorization": f"Bearer {conversation['token']}",
            "Content-Type": "application/json",
        }
        answer = blocking_api.raw("POST", path, body, headers)
        assert answer.status == 400, answer.body
        assert answer.body["error"]["code"] == "invalid_json"

    await asyncio.to_thread(run)


def test_the_body_limit_fits_the_largest_answer_escaped() -> None:
    largest = max(step.max_length for step in INTAKE.steps)
    assert largest * 12 + 4096 <= Settings().max_body_bytes


@pytest.mark.parametrize("ensure_ascii", [True, False], ids=["escaped", "utf8"])
async def test_the_largest_answer_in_a_4_byte_script_is_accepted(
    start_server: StartServer, ensure_ascii: bool
) -> None:
    """20,000 characters of Gothic (4 bytes each in UTF-8, 12 as a JSON surrogate-pair escape)
    over real HTTP: the answer is taken, not refused as too large a body."""
    server = await start_server()
    api = BlockingApi(server.base_url)
    largest = max(step.max_length for step in INTAKE.steps)
    account = "\U00010330" * largest

    def run() -> dict[str, Any]:
        conversation = api.create().body
        for message in SCRIPT_TO_WHAT_HAPPENED:
            assert api.send(conversation, message).status == 200
        body = json.dumps({"text": account}, ensure_ascii=ensure_ascii).encode("utf-8")
        path = f"/api/v1/conversations/{conversation['conversation_id']}/messages"
        headers = {
            "Authorization": f"Bearer {conversation['token']}",
            "Content-Type": "application/json",
        }
        answer = api.raw("POST", path, body, headers)
        assert answer.status == 200, answer.body
        return dict(answer.body)

    reply = await asyncio.to_thread(run)
    assert reply["step"] != "what_happened"  # taken: the conversation moved on


async def test_a_summary_reply_and_a_change_match_the_document(blocking_api: BlockingApi) -> None:
    """The summary step's reply must carry its rows (the document requires them there and
    nowhere else), and a Change from a row is a documented turn carrying the value."""

    def run() -> None:
        api = blocking_api
        conversation = api.create({"locale": "ar"}).body
        script = [
            *SCRIPT_TO_WHAT_HAPPENED,
            {"text": "Kind staff."},
            {"choice": "yes"},
            {"choice": "no"},
            {"choice": "no"},
        ]
        for message in script:
            reply = api.send(conversation, message)
            assert reply.status == 200
        assert reply.body["step"] == "summary" and len(reply.body["summary"]) == 8
        changed = api.send(conversation, {"choice": "what_happened"})
        assert changed.body["messages"][-1]["value"] == "Kind staff."
        view = api.view(conversation)
        assert view.body["transcript"][-1]["value"] == "Kind staff."

    await asyncio.to_thread(run)


def test_the_document_refuses_a_summary_reply_without_rows_and_rows_elsewhere() -> None:
    reply = {
        "conversation_id": "00000000-0000-4000-8000-000000000000",
        "locale": "en",
        "dir": "ltr",
        "step": "summary",
        "messages": [{"text": "1. When: Not given", "choices": [], "input": "choice"}],
        "done": False,
        "reference": None,
    }
    row = {"step": "when", "label": "When", "value": "Not given", "changeable": True}
    validate = Draft202012Validator(
        {"$ref": "#/components/schemas/Reply", "components": DOCUMENT["components"]}
    )
    assert not validate.is_valid(reply)
    assert validate.is_valid({**reply, "summary": [row]})
    assert not validate.is_valid({**reply, "summary": []})
    assert not validate.is_valid({**reply, "summary": [{**row, "changeable": "yes"}]})
    assert not validate.is_valid({**reply, "step": "when", "summary": [row]})


async def test_a_typed_exit_matches_the_document(blocking_api: BlockingApi) -> None:
    """The exit word's reply carries `exit: true` (checked against the document inside the
    client); the document allows only true there."""

    def run() -> dict[str, Any]:
        conversation = blocking_api.create({"locale": "en"}).body
        blocking_api.send(conversation, {"choice": "start"})
        answer = blocking_api.send(conversation, {"text": "exit"})
        assert answer.status == 200
        return dict(answer.body)

    reply = await asyncio.to_thread(run)
    assert reply["exit"] is True and reply["done"] is True
    validate = Draft202012Validator(
        {"$ref": "#/components/schemas/Reply", "components": DOCUMENT["components"]}
    )
    assert validate.is_valid(reply)
    assert not validate.is_valid({**reply, "exit": False})
