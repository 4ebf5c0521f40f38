"""Helpers for delivery tests: a server whose dispatcher polls often and retries quickly,
and a report submitted over the real web API, answering whatever step comes next."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aiohttp import web

from bot.app import build_app
from bot.config import Settings
from bot.outbox.config import DeliverySettings
from bot.outbox.dispatcher import OutboxDispatcher, Outcome
from bot.outbox.setup import DELIVERY, DeliveryOptions
from bot.ports import OutboxMessage
from tests.conftest import Api, RunningServer

FAST = DeliveryOptions(poll_interval=0.05, retry_base=0.05)


async def serve_delivering(
    settings: Settings,
    delivery: DeliverySettings,
    options: DeliveryOptions = FAST,
    *,
    port: int = 0,
) -> RunningServer:
    settings = replace(settings, delivery=delivery)
    app = build_app(settings)
    app[DELIVERY].options = options
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    host, port = runner.addresses[0][:2]
    return RunningServer(app, runner, f"http://{host}:{port}", settings)


async def submit(
    api: Api,
    *,
    locale: str = "en",
    email: str | None = None,
    phone: str | None = None,
    risk: str = "no",
    what_happened: str = "The night staff shouted at my mother.",
    provider: str = "Qwxz Zzyq",
    location_id: str | None = None,
    alerts: str = "no",
) -> dict[str, Any]:
    """Complete a poor-care report; returns the final reply (with its reference)."""
    created = await api.create({"locale": locale})
    assert created.status == 201, created.body
    conversation = dict(created.body)
    wants_contact = email is not None or phone is not None
    answers: dict[str, dict[str, str]] = {
        "welcome": {"choice": "start"},
        "experience": {"choice": "poor"},
        "service_type": {"choice": "care_home"},
        "provider": {"text": provider},
        "relationship": {"choice": "friend_family"},
        "when": {"choice": "skip"},
        "service_part": {"choice": "skip"},
        "what_happened": {"text": what_happened},
        "share_with_service": {"choice": "yes"},
        "risk": {"choice": risk},
        "authorities": {"choice": "neither"},
        "complaint": {"choice": "not_yet"},
        "complaint_info": {"choice": "continue"},
        "contact": {"choice": "yes" if wants_contact else "no"},
        "contact_name": {"text": "Sam Example"},
        "contact_email": {"text": email} if email else {"choice": "skip"},
        "contact_phone": {"text": phone} if phone else {"choice": "skip"},
        "alerts": {"choice": alerts},
        "referral": {"choice": "no"},
        "summary": {"choice": "submit"},
    }
    step = conversation["step"]
    reply: dict[str, Any] = conversation
    for _ in range(40):
        if step == "submitted":
            return reply
        if step == "provider" and reply["messages"][-1]["choices"]:
            body = {"choice": location_id or "none"}  # directory matches offered
        else:
            body = answers[step]
        result = await api.send(conversation, body)
        assert result.status == 200, result.body
        reply = result.body
        if reply["step"] == step and step != "provider":
            raise AssertionError(f"stuck at {step}: {reply['messages']}")
        step = reply["step"]
    raise AssertionError("the conversation did not end")


def confirmation(reply: dict[str, Any]) -> str:
    return "\n".join(m["text"] for m in reply["messages"])


class Settled:
    """Awaits outcomes recorded by a dispatcher (after the database write, not the send)."""

    def __init__(self, dispatcher: OutboxDispatcher) -> None:
        self.outcomes: list[tuple[OutboxMessage, Outcome]] = []
        self._changed = asyncio.Event()
        dispatcher.observers.append(self._observe)

    def _observe(self, message: OutboxMessage, outcome: Outcome) -> None:
        self.outcomes.append((message, outcome))
        self._changed.set()

    def done(self, topic: str) -> list[OutboxMessage]:
        return [m for m, o in self.outcomes if m.topic == topic and o.status == "done"]

    async def until(self, ready: Callable[[], bool], limit: float = 30.0) -> None:
        async with asyncio.timeout(limit):
            while not ready():
                self._changed.clear()
                await self._changed.wait()
