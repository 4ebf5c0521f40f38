"""Property-based fuzzing of the web API: random sequences of valid and invalid requests
against the real app over loopback, on SQLite and on PostgreSQL.

Hypothesis' stateful testing drives a state machine (in a thread, with a blocking client, while
the test's event loop serves): create conversations, send them valid answers, random text,
random JSON, raw bytes, huge numbers, wrong content types and wrong tokens, and read them back.
Whatever it sends, every answer is a documented status with a JSON body that matches the
published OpenAPI document, never a 5xx; and at the end every conversation that the person did
not end themselves can still be taken to a stored report. Bounded: a few seconds per backend;
`INTAKE_FUZZ_EXAMPLES=200` runs a longer search (about a minute).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, rule, run_state_machine_as_test

from bot.config import Settings
from bot.engine.types import COMMANDS
from tests.conftest import serve
from tests.contract.http_client import BlockingApi, finish, next_answer
from tests.fixtures import SMALL_DIRECTORY
from tests.storage.conftest import clock, database_url  # noqa: F401 (fixtures)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(["text", "choice", "command", "client_message_id", "locale", "n"])
BODIES = st.one_of(
    st.fixed_dictionaries({"text": st.text(max_size=300)}),
    st.fixed_dictionaries({"choice": st.text(max_size=40)}),
    st.fixed_dictionaries({"command": st.sampled_from(COMMANDS) | st.text(max_size=10)}),
    st.dictionaries(FIELDS, JSON_VALUES, max_size=3),
    JSON_VALUES,
)
RAW_BODIES = st.one_of(
    st.binary(max_size=200),
    st.just(b'{"choice": "x", "n": ' + b"7" * 5000 + b"}"),
    st.just(b'{"text": "\\ud800"}'),
    st.just(b"[" * 5000),
    st.text(max_size=100).map(lambda t: t.encode("utf-16")),
)
CONTENT_TYPES = st.sampled_from(
    ["application/json", "text/plain", "application/json; charset=latin-1", "", "*/*"]
)


def machine_for(base_url: str) -> type[RuleBasedStateMachine]:
    api = BlockingApi(base_url)

    class ApiMachine(RuleBasedStateMachine):
        conversations = Bundle("conversations")

        def __init__(self) -> None:
            super().__init__()
            self.replies: dict[str, dict[str, Any]] = {}
            self.all: list[dict[str, Any]] = []

        @rule(target=conversations, locale=st.none() | st.text(max_size=12))
        def create(self, locale: str | None) -> dict[str, Any]:
            answer = api.create({} if locale is None else {"locale": locale})
            assert answer.status == 201, answer.body
            conversation = {k: answer.body[k] for k in ("conversation_id", "token")}
            self.replies[conversation["conversation_id"]] = answer.body
            self.all.append(conversation)
            return conversation

        @rule(
            raw=RAW_BODIES | JSON_VALUES.map(lambda v: json.dumps(v).encode()),
            content_type=CONTENT_TYPES,
        )
        def create_with_any_body(self, raw: bytes, content_type: str) -> None:
            headers = {"Content-Type": content_type} if content_type else {}
            answer = api.raw("POST", "/api/v1/conversations", raw, headers)
            assert answer.status in (201, 400, 413, 415), answer.body

        @rule(conversation=conversations)
        def answer_validly(self, conversation: dict[str, Any]) -> None:
            current = self.replies[conversation["conversation_id"]]
            if current["done"]:
                return
            self._turn(conversation, next_answer(current))

        @rule(conversation=conversations, body=BODIES, message_id=st.none() | st.text(max_size=8))
        def send_json(
            self, conversation: dict[str, Any], body: Any, message_id: str | None
        ) -> None:
            if isinstance(body, dict) and message_id is not None:
                body = {**body, "client_message_id": message_id}
            self._turn(conversation, body)

        @rule(conversation=conversations, raw=RAW_BODIES, content_type=CONTENT_TYPES)
        def send_raw(self, conversation: dict[str, Any], raw: bytes, content_type: str) -> None:
            path = f"/api/v1/conversations/{conversation['conversation_id']}/messages"
            headers = {"Authorization": f"Bearer {conversation['token']}"}
            if content_type:
                headers["Content-Type"] = content_type
            answer = api.raw("POST", path, raw, headers)
            assert answer.status in (200, 400, 413, 415), answer.body

        # Well-formed HTTP only: a header with control characters is refused by aiohttp's
        # parser before the application sees it.
        @rule(
            conversation=conversations,
            token=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60),
        )
        def wrong_token(self, conversation: dict[str, Any], token: str) -> None:
            forged = {**conversation, "token": token or "x"}
            if forged["token"] == conversation["token"]:
                return
            answer = api.send(forged, {"choice": "start"})
            assert answer.status == 401, answer.body

        @rule(path=st.text(max_size=30))
        def unknown_path(self, path: str) -> None:
            quoted = "/api/v1/" + "".join(
                c for c in path if c.isascii() and (c.isalnum() or c in "-_/")
            )
            answer = api.raw("GET", quoted)
            assert answer.status in (200, 401, 404, 405), answer.body

        @rule(conversation=conversations)
        def view(self, conversation: dict[str, Any]) -> None:
            answer = api.view(conversation)
            assert answer.status == 200, answer.body
            assert isinstance(answer.body["transcript"], list)

        def _turn(self, conversation: dict[str, Any], body: Any) -> None:
            answer = api.send(conversation, body)
            assert answer.status in (200, 400), answer.body
            if answer.status == 200:
                self.replies[conversation["conversation_id"]] = answer.body

        def teardown(self) -> None:
            for conversation in self.all:
                current = self.replies[conversation["conversation_id"]]
                reference = finish(api, conversation)
                if reference is None:
                    # Only the person can end a conversation without a report (cancel, or a
                    # service that is not ours), and then nothing reopens it.
                    assert current["done"] or current["step"] != "submitted"
                    assert json.dumps(api.view(conversation).body["messages"])

    return ApiMachine


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_fuzz_the_api_never_fails_and_conversations_still_finish(
    database_url: str,  # noqa: F811
) -> None:
    server = await serve(
        Settings(
            database_url=database_url,
            directory_csv=SMALL_DIRECTORY,
            rate_limit_per_minute=100_000,
            new_conversations_per_minute=100_000,
            new_conversations_total_per_minute=100_000,
        )
    )
    try:
        machine = machine_for(server.base_url)
        budget = settings(
            max_examples=int(os.environ.get("INTAKE_FUZZ_EXAMPLES", "6")),
            stateful_step_count=12,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        await asyncio.to_thread(run_state_machine_as_test, machine, settings=budget)
    finally:
        await server.stop()
