"""The survey about the chat in the web API: offered in the confirmation's reply, started
with `{"survey_for": id}` and the sent conversation's token, 409 when not offered, declined
with the turn `{"choice": "survey_decline"}`. Every answer is checked against the OpenAPI
document."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Api, ApiResult
from tests.contract.openapi_check import check_response

GOOD_PATH: list[dict[str, str]] = [
    {"choice": "start"},
    {"choice": "good"},
    {"choice": "dentist"},
    {"text": "Qwxz Zzyq Nonexistent"},
    {"choice": "self"},
    {"text": "Gentle and quick."},
    {"choice": "yes"},  # may share with the service
    {"choice": "no"},  # no contact
    {"choice": "no"},  # no organisation pointed them here
    {"choice": "submit"},
]


def documented(method: str, path: str, result: ApiResult) -> Any:
    raw = json.dumps(result.body).encode()
    return check_response(method, path, result.status, dict(result.headers), raw)


async def _sent(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    conversation = await api.new_conversation()
    reply: ApiResult | None = None
    for body in GOOD_PATH:
        reply = await api.send(conversation, body)
        assert reply.status == 200, reply.body
    assert reply is not None and reply.body["done"] and reply.body["reference"]
    path = f"/api/v1/conversations/{conversation['conversation_id']}/messages"
    documented("POST", path, reply)
    return conversation, reply.body


async def _start_survey(api: Api, for_id: str, token: str) -> ApiResult:
    result = await api.create({"survey_for": for_id}, headers={"Authorization": f"Bearer {token}"})
    documented("POST", "/api/v1/conversations", result)
    return result


async def test_the_confirmation_offers_the_survey_and_it_runs_as_its_own_conversation(
    api: Api,
) -> None:
    conversation, sent = await _sent(api)
    offer = sent["survey_offer"]
    assert offer["conversation_id"] == conversation["conversation_id"]
    assert [c["id"] for c in offer["choices"]] == ["survey_start", "survey_decline"]
    # The confirmation itself is unchanged: no buttons under it.
    assert sent["messages"][-1]["choices"] == []
    view = await api.view(conversation)
    assert view.body["survey_offer"] == offer

    started = await _start_survey(api, conversation["conversation_id"], conversation["token"])
    assert started.status == 201
    survey = started.body
    assert survey["conversation_id"] != conversation["conversation_id"]
    assert survey["token"] != conversation["token"]
    assert survey["step"] == "survey_ease" and survey["reference"] is None
    assert survey["messages"][-1]["text"].startswith("Question 1 of 3\n")
    assert [c["id"] for c in survey["messages"][-1]["choices"]][:2] == ["very_easy", "easy"]
    assert "survey_offer" not in (await api.view(conversation)).body

    for body, step in (
        ({"choice": "very_easy"}, "survey_said_all"),
        ({"choice": "yes"}, "survey_improve"),
        ({"text": "Nothing, it was fine."}, "survey_thanks"),
    ):
        turn = await api.send(survey, body)
        assert turn.status == 200 and turn.body["step"] == step
    assert turn.body["done"] is True
    assert "saved your answers" in turn.body["messages"][-1]["text"]
    # Nothing typed in the survey is kept with its conversation (the answers are stored apart).
    assert (await api.view(survey)).body["transcript"] == []


async def test_a_survey_not_offered_is_409(api: Api) -> None:
    conversation, _sent_body = await _sent(api)
    other = await api.new_conversation()
    # Another client's token, a conversation still going, an id that is not one.
    for for_id, token in (
        (conversation["conversation_id"], other["token"]),
        (other["conversation_id"], other["token"]),
        ("not-a-conversation", conversation["token"]),
    ):
        refused = await _start_survey(api, for_id, token)
        assert refused.status == 409, refused.body
        assert refused.body["error"]["code"] == "survey_not_offered"
    # Without a token at all: 401, as for every conversation's own resource.
    assert (await api.create({"survey_for": conversation["conversation_id"]})).status == 401
    assert (
        await _start_survey(api, conversation["conversation_id"], conversation["token"])
    ).status == 201
    # Taken once: not again.
    again = await _start_survey(api, conversation["conversation_id"], conversation["token"])
    assert again.status == 409 and again.body["error"]["code"] == "survey_not_offered"


async def test_declining_removes_the_offer(api: Api) -> None:
    conversation, sent = await _sent(api)
    declined = await api.send(conversation, {"choice": "survey_decline"})
    assert declined.status == 200
    documented(
        "POST", f"/api/v1/conversations/{conversation['conversation_id']}/messages", declined
    )
    assert declined.body["done"] is True and "survey_offer" not in declined.body
    assert declined.body["reference"] == sent["reference"]
    assert declined.body["messages"][0]["text"] == "All right. Thank you for using this chat."
    assert "survey_offer" not in (await api.view(conversation)).body
    refused = await _start_survey(api, conversation["conversation_id"], conversation["token"])
    assert refused.status == 409
