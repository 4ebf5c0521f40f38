"""Every conversation script (tests/scripts/*.convo) over the real HTTP API, with the stored
report checked in the database: the same readable scripts the engine tests run."""

from __future__ import annotations

from typing import Any

import pytest

from bot.appkeys import STORAGE
from tests.conftest import Api, RunningServer
from tests.convo import Says, Script, Send, all_scripts, field_value

SCRIPTS = all_scripts()


def body_for(action: Send, number: int) -> dict[str, str]:
    return {action.kind: action.value, "client_message_id": f"{number}"}


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
async def test_script_over_http(script: Script, api: Api, app_server: RunningServer) -> None:
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
