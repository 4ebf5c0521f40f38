"""Every conversation script (tests/scripts/*.convo) over the real HTTP API, with the stored
report checked in the database: the same readable scripts the engine tests run."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from bot.appkeys import STORAGE
from bot.outbox.config import DeliverySettings, parse_smtp_url
from tests.conftest import Api, StartServer
from tests.convo import Says, Script, Send, all_scripts, field_value

SCRIPTS = all_scripts()
#: The server settings that turn each engine switch on, as the app derives its switches.
SWITCHED_ON = {
    # Inspection alerts can be delivered: email on and a public address for the links (the
    # SMTP server is never reached in these tests; the chat only needs email to be on).
    "email_alerts": {
        "delivery": DeliverySettings(
            public_url="https://intake.example.org",
            email_from="feedback@intake.example.org",
            smtp=parse_smtp_url("smtp://127.0.0.1:9"),
        )
    },
}


def body_for(action: Send, number: int) -> dict[str, str]:
    return {action.kind: action.value, "client_message_id": f"{number}"}


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
async def test_script_over_http(
    script: Script, start_server: StartServer, client: aiohttp.ClientSession
) -> None:
    overrides: dict[str, Any] = {}
    for name, on in script.switches.items():
        if on:
            overrides.update(SWITCHED_ON[name])
    app_server = await start_server(**overrides)
    api = Api(client, app_server.base_url)
    conversation = await api.new_conversation()
    last: dict[str, Any] = conversation
    for action in script.actions:
        if isinstance(action, Says):
            said = " ".join(m["text"] for m in last["messages"])
            assert action.text in said, (
                f"{script.name}:{action.line}: {action.text!r} not in {said!r}"
            )
            continue
        result = await api.send(conversation, body_for(action, action.line))
        assert result.status == 200, f"{script.name}:{action.line}: {result.body}"
        last = result.body
        if action.expect_step:
            assert last["step"] == action.expect_step, f"{script.name}:{action.line}"

    reference = last.get("reference")
    if script.expect_no_report:
        assert reference is None
        async with app_server.app[STORAGE].unit_of_work() as uow:
            assert await uow.reports.count() == 0
        return
    assert reference is not None, script.name
    async with app_server.app[STORAGE].unit_of_work() as uow:
        stored = await uow.reports.get(reference)
    assert stored is not None
    for name, expected in script.expectations.items():
        assert field_value(stored.data, name) == expected, f"{script.name}: {name}"
