"""Whole conversations over the real HTTP API: a report to the end, retries, restarts, and
what happens to awkward text on the way to the transcript."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from bot.appkeys import STORAGE
from tests.conftest import Api, RunningServer, StartServer

REFERENCE = re.compile(r"^[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}$")

#: Poor care at a care home, seen by a relative; someone at risk; no contact details.
POOR_CARE_HOME: list[tuple[dict[str, str], str]] = [
    ({"choice": "start"}, "experience"),
    ({"choice": "poor"}, "service_type"),
    ({"choice": "care_home"}, "provider"),
    ({"text": "Qwxz Zzyq Nonexistent House, Nowhere"}, "relationship"),
    ({"choice": "friend_family"}, "when"),
    ({"text": "Last week"}, "service_part"),
    ({"choice": "skip"}, "what_happened"),
    ({"text": "My mother was left without water all afternoon."}, "share_with_service"),
    ({"choice": "yes"}, "risk"),
    ({"choice": "yes"}, "authorities"),
    ({"choice": "neither"}, "complaint"),
    ({"choice": "not_yet"}, "complaint_info"),
    ({"choice": "continue"}, "contact"),
    ({"choice": "no"}, "referral"),
    ({"choice": "no"}, "summary"),
    ({"choice": "submit"}, "submitted"),
]


async def drive(
    api: Api,
    conversation: dict[str, Any],
    script: list[tuple[dict[str, str], str]],
    *,
    first: int = 0,
) -> dict[str, Any]:
    """Send each message (with a unique client_message_id) and check the step it leads to."""
    body: dict[str, Any] = {}
    for number, (message, expected_step) in enumerate(script, start=first):
        result = await api.send(conversation, {**message, "client_message_id": f"turn-{number}"})
        assert result.status == 200, result.body
        body = result.body
        assert body["step"] == expected_step, (message, body["messages"])
    return body


def user_lines(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry for entry in view["transcript"] if entry["role"] == "user"]


async def test_full_report_over_http(api: Api, app_server: RunningServer) -> None:
    conversation = await api.new_conversation()
    final = await drive(api, conversation, POOR_CARE_HOME)
    assert final["done"] is True
    assert final["reference"] is not None
    assert REFERENCE.match(final["reference"])
    assert final["reference"] in " ".join(m["text"] for m in final["messages"])

    async with app_server.app[STORAGE].unit_of_work() as uow:
        stored = await uow.reports.get(final["reference"])
    assert stored is not None
    assert stored.channel == "web"
    assert stored.data["urgent"] is True
    assert stored.data["what_happened"] == "My mother was left without water all afternoon."

    # A submitted conversation cannot be reopened: further turns change nothing.
    after = await api.send(conversation, {"command": "restart"})
    assert after.status == 200
    assert after.body["step"] == "submitted"
    assert after.body["reference"] == final["reference"]


async def test_same_client_message_id_is_applied_once(api: Api) -> None:
    conversation = await api.new_conversation()
    first = await api.send(conversation, {"choice": "start", "client_message_id": "m-1"})
    lines = len((await api.view(conversation)).body["transcript"])
    again = await api.send(conversation, {"choice": "start", "client_message_id": "m-1"})
    assert again.status == 200
    assert again.body == first.body
    view = (await api.view(conversation)).body
    assert len(view["transcript"]) == lines
    assert len(user_lines(view)) == 1
    assert view["step"] == "experience"


async def test_message_ids_are_per_conversation(api: Api) -> None:
    one = await api.new_conversation()
    two = await api.new_conversation()
    assert (await api.send(one, {"choice": "start", "client_message_id": "same"})).status == 200
    other = await api.send(two, {"choice": "start", "client_message_id": "same"})
    assert other.body["conversation_id"] == two["conversation_id"]
    assert other.body["step"] == "experience"


async def test_resume_after_server_restart(
    start_server: StartServer, client: aiohttp.ClientSession
) -> None:
    first = await start_server()
    api = Api(client, first.base_url)
    conversation = await api.new_conversation()
    await drive(api, conversation, POOR_CARE_HOME[:4])
    before = (await api.view(conversation)).body
    await first.stop()

    second = await start_server()
    api = Api(client, second.base_url)
    after = await api.view(conversation)
    assert after.status == 200
    assert after.body["step"] == before["step"] == "relationship"
    assert after.body["transcript"] == before["transcript"]
    assert after.body["messages"] == before["messages"]
    # And the conversation carries on where it stopped.
    turn = await api.send(conversation, {"choice": "friend_family"})
    assert turn.body["step"] == "when"


async def test_markup_is_stored_verbatim(api: Api) -> None:
    markup = "<img src=x onerror=alert(1)> & <script>alert('x')</script>"
    conversation = await api.new_conversation()
    await drive(api, conversation, POOR_CARE_HOME[:7])
    result = await api.send(conversation, {"text": markup})
    assert result.body["step"] == "share_with_service"
    async with api.session.get(
        f"{api.base_url}/api/v1/conversations/{conversation['conversation_id']}",
        headers={"Authorization": f"Bearer {conversation['token']}"},
    ) as response:
        raw = await response.text()
        view = await response.json()
    assert user_lines(view)[-1]["text"] == markup
    assert user_lines(view)[-1]["value"] == markup
    # JSON-escaped only, never HTML-escaped; served as JSON so it is never rendered.
    assert "&lt;" not in raw
    assert response.headers["Content-Type"].startswith("application/json")


async def test_control_characters_are_stripped(api: Api) -> None:
    conversation = await api.new_conversation()
    await drive(api, conversation, POOR_CARE_HOME[:7])
    typed = "Left\u0000 alone\u0007 all\u202e night\u200b long"
    result = await api.send(conversation, {"text": typed})
    assert result.status == 200
    assert result.body["step"] == "share_with_service"
    line = user_lines((await api.view(conversation)).body)[-1]
    # Controls and bidi overrides go; a zero-width space is text as typed and stays.
    assert line["text"] == "Left alone all night\u200b long"
    assert "\u0000" not in line["value"]  # PostgreSQL JSONB cannot store NUL
    await drive(api, conversation, POOR_CARE_HOME[8:15], first=8)
    summary = (await api.view(conversation)).body
    shown = " ".join(m["text"] for m in summary["messages"])
    assert "Left alone all night\u200b long" in shown
    assert not any(ch in shown for ch in "\u0000\u0007\u202e")
