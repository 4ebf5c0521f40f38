"""A plain blocking HTTP client for the API (http.client), for tests that run in a thread
(Hypothesis state machines) against a server served by the test's event loop, and a driver that
takes any open conversation to a stored report. Every answer is checked against the OpenAPI
document."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tests.contract.openapi_check import check_response

#: The answer the driver gives at each step to reach a report by the shortest path.
PREFERRED_CHOICES = {
    "welcome": "start",
    "experience": "good",
    "service_type": "gp",
    "relationship": "self",
    "works_there": "no",
    "contact": "no",
    "summary": "submit",
    "risk": "no",
    "mha": "no",
    "alerts": "no",
    "share_with_service": "yes",
    "referral": "no",
    "provider": "none",
    "not_covered": "change_service",
    "outside_england": "back",
    "language": "en",
}
TEXT_ANSWERS = {
    "provider": "Qwxz Zzyq Nonexistent Surgery",
    "what_happened": "The nurse was kind and explained everything.",
    "service_other": "A walk-in centre",
    "when": "Last week",
}


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class BlockingApi:
    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout

    def raw(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            raw = response.read()
            answer_headers = {k: v for k, v in response.getheaders()}
            parsed = check_response(method, path, response.status, answer_headers, raw)
            return Answer(response.status, parsed, answer_headers)
        finally:
            connection.close()

    def json(self, method: str, path: str, payload: Any = None, token: str | None = None) -> Answer:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        return self.raw(method, path, body, headers)

    def create(self, payload: Any = None) -> Answer:
        return self.json("POST", "/api/v1/conversations", payload if payload is not None else {})

    def send(self, conversation: dict[str, Any], payload: Any) -> Answer:
        path = f"/api/v1/conversations/{conversation['conversation_id']}/messages"
        return self.json("POST", path, payload, conversation["token"])

    def view(self, conversation: dict[str, Any]) -> Answer:
        path = f"/api/v1/conversations/{conversation['conversation_id']}"
        return self.json("GET", path, None, conversation["token"])


def next_answer(reply: dict[str, Any]) -> dict[str, str]:
    """What the driver says to `reply`'s question."""
    step = reply["step"]
    last = reply["messages"][-1] if reply["messages"] else {"input": "none", "choices": []}
    if last["input"] == "text" or (step in TEXT_ANSWERS and not last["choices"]):
        return {"text": TEXT_ANSWERS.get(step, "Something")}
    ids = [c["id"] for c in last["choices"]]
    preferred = PREFERRED_CHOICES.get(step)
    if preferred in ids:
        return {"choice": preferred}
    if "skip" in ids:
        return {"choice": "skip"}
    if ids:
        return {"choice": ids[0]}
    return {"command": "restart"}


def finish(api: BlockingApi, conversation: dict[str, Any], *, max_turns: int = 60) -> str | None:
    """Take a conversation to a stored report; returns its reference, or None when the person
    had already ended it (cancel, or "not ours"), which nothing can reopen."""
    reply = api.view(conversation)
    assert reply.status == 200, reply.body
    current = reply.body
    for _ in range(max_turns):
        if current["done"]:
            return current["reference"]
        answer = api.send(conversation, next_answer(current))
        assert answer.status == 200, answer.body
        current = answer.body
    raise AssertionError(f"not finished after {max_turns} turns; stuck at {current['step']}")
