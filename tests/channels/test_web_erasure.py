"""Cancel (and exit) over the web chat API keeps nothing that was typed, in any table; a retried message
of the cancelled conversation is answered with its end."""

from __future__ import annotations

from typing import Any

import pytest

from bot.app import STORAGE
from tests.conftest import Api, RunningServer
from tests.erasure_support import new_marker, path_to_summary, tables_holding


@pytest.mark.parametrize("ending", [{"command": "cancel"}, {"text": "exit"}])
async def test_cancel_or_exit_over_the_web_api_keeps_nothing(
    api: Api, app_server: RunningServer, ending: dict[str, str]
) -> None:
    engine: Any = app_server.app[STORAGE].engine  # type: ignore[attr-defined]
    marker = new_marker()
    conversation = await api.new_conversation()
    for number, (kind, value) in enumerate(path_to_summary(marker)):
        sent = await api.send(conversation, {kind: value, "client_message_id": f"m{number}"})
        assert sent.status == 200, sent.body
    assert marker in sent.body["messages"][-1]["text"]
    assert "inbound_messages.reply" in await tables_holding(engine, marker)

    cancelled = await api.send(conversation, {**ending, "client_message_id": "bye"})
    assert cancelled.status == 200 and cancelled.body["step"] == "cancelled"
    assert cancelled.body.get("exit", False) is ("text" in ending)
    assert await tables_holding(engine, marker) == []
    retried = await api.send(conversation, {"text": "again", "client_message_id": "m8"})
    assert retried.status == 200 and retried.body["step"] == "cancelled"
    assert marker not in str(retried.body)
    view = await api.view(conversation)
    assert view.status == 200 and view.body["transcript"] == []
