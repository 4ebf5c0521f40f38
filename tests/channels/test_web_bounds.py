"""What one client can make the server keep and send: a refused over-long answer is kept only
as a note, a transcript is bounded in lines, and a view is bounded in size."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.appkeys import STORAGE
from bot.intake import service as service_module
from storage.models import transcript_entries
from tests.conftest import Api, StartServer

TO_WHAT_HAPPENED = [
    {"choice": "start"},
    {"choice": "good"},
    {"choice": "gp"},
    {"text": "Qwxz Zzyq Nonexistent Surgery"},
    {"choice": "self"},
]


async def _stored_lines(server: Any, conversation_id: str) -> list[dict[str, Any]]:
    engine = server.app[STORAGE].engine
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(transcript_entries.c.payload)
            .where(transcript_entries.c.conversation_id == conversation_id)
            .order_by(transcript_entries.c.seq)
        )
        return [dict(row.payload) for row in rows]


async def test_an_over_long_answer_is_refused_and_only_noted(
    start_server: StartServer, client: Any
) -> None:
    server = await start_server()
    api = Api(client, server.base_url)
    conversation = await api.new_conversation()
    for message in TO_WHAT_HAPPENED:
        assert (await api.send(conversation, message)).status == 200
    refused = await api.send(conversation, {"text": "secret" * 10_850})  # 65,100 characters
    assert refused.status == 200
    assert refused.body["step"] == "what_happened"  # re-prompted

    stored = await _stored_lines(server, conversation["conversation_id"])
    assert "secret" not in json.dumps(stored)
    assert {
        "text": "",
        "kind": "text",
        "value": "",
        "refused": "too_long",
        "length": 65_100,
    } in stored
    assert sum(len(json.dumps(line)) for line in stored) < 20_000
    view = await api.view(conversation)
    assert "secret" not in json.dumps(view.body)
    assert any(e.get("refused") == "too_long" for e in view.body["transcript"])


async def test_a_transcript_keeps_at_most_its_bound_of_lines(
    start_server: StartServer, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "MAX_TRANSCRIPT_LINES", 30)
    server = await start_server(rate_limit_per_minute=10_000)
    api = Api(client, server.base_url)
    conversation = await api.new_conversation()
    for _ in range(25):  # each "help" turn adds at least two lines
        assert (await api.send(conversation, {"command": "help"})).status == 200
    engine = server.app[STORAGE].engine
    async with engine.connect() as connection:
        count = await connection.scalar(
            select(func.count()).where(
                transcript_entries.c.conversation_id == conversation["conversation_id"]
            )
        )
    assert count == 30
    view = await api.view(conversation)
    # The newest lines are the ones kept: the view still ends with the current question.
    assert view.body["transcript"][-1]["text"] == view.body["messages"][-1]["text"]


async def test_a_view_returns_the_newest_lines_within_its_size(
    start_server: StartServer, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "TRANSCRIPT_VIEW_MAX_CHARS", 3_000)
    server = await start_server(rate_limit_per_minute=10_000)
    api = Api(client, server.base_url)
    conversation = await api.new_conversation()
    for _ in range(20):
        assert (await api.send(conversation, {"command": "help"})).status == 200
    stored = await _stored_lines(server, conversation["conversation_id"])
    view = await api.view(conversation)
    shown = view.body["transcript"]
    assert 0 < len(shown) < len(stored)
    assert (
        sum(len(json.dumps({k: v for k, v in e.items() if k not in ("role", "at")})) for e in shown)
        <= 3_200
    )
    assert shown[-1]["text"] == view.body["messages"][-1]["text"]


async def test_each_worker_sweeps_conversations_nobody_answered(
    start_server: StartServer, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from bot.channels.web import api as web_channel

    monkeypatch.setattr(web_channel, "SWEEP_INTERVAL_SECONDS", 0.01)
    monkeypatch.setattr(web_channel, "UNTOUCHED_MAX_AGE", timedelta(days=1))
    swept = asyncio.Event()
    original = service_module.IntakeService.purge_untouched

    async def watched(self: Any, *args: Any, **kwargs: Any) -> int:
        deleted = await original(self, *args, **kwargs)
        if deleted:
            swept.set()
        return deleted

    monkeypatch.setattr(service_module.IntakeService, "purge_untouched", watched)
    server = await start_server()
    api = Api(client, server.base_url)
    answered = await api.new_conversation()
    assert (await api.send(answered, {"choice": "start"})).status == 200
    untouched = await api.new_conversation()
    monkeypatch.setattr(web_channel, "UNTOUCHED_MAX_AGE", timedelta(0))  # read at each sweep
    await asyncio.wait_for(swept.wait(), timeout=10)
    assert (await api.view(untouched)).status == 404
    assert (await api.view(answered)).status == 200
