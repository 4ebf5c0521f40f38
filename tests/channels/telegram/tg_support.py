"""Helpers for the Telegram channel tests: the running app, and a person in a chat."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import func, select

from bot.app import SERVICE
from bot.appkeys import SETTINGS
from bot.channels.telegram import TELEGRAM, TelegramChannel, TelegramOptions
from bot.intake.service import IntakeService
from storage.models import outbox
from tests.fakes.telegram_api import FakeTelegramAPI

SECRET = "s3cret"
FAST = TelegramOptions(
    dispatcher_poll_interval=0.05, backoff_cap=0.2, rate_per_second=1000.0, per_chat_rate=1000.0
)
_update_ids = itertools.count(10_000)
_message_ids = itertools.count(1)


@dataclass
class TelegramServer:
    app: web.Application
    runner: web.AppRunner
    base_url: str
    session: aiohttp.ClientSession

    @property
    def channel(self) -> TelegramChannel:
        return self.app[TELEGRAM]

    @property
    def service(self) -> IntakeService:
        return self.app[SERVICE]

    async def post(
        self, update: dict[str, Any], *, secret: str | None = SECRET, **kwargs: Any
    ) -> int:
        headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
        async with self.session.post(
            f"{self.base_url}/telegram/webhook", json=update, headers=headers, **kwargs
        ) as response:
            body = await response.read()
            status = response.status
        if status == 200:
            await self.perform_webhook_answer(json.loads(body))
        return status

    async def perform_webhook_answer(self, answer: dict[str, Any]) -> None:
        """What Telegram does with a webhook's 200: perform the method its body names."""
        if "method" not in answer:
            return
        params = {k: v for k, v in answer.items() if k != "method"}
        settings = self.app[SETTINGS]
        url = f"{settings.telegram_api_base_url}/bot{settings.telegram_token}/{answer['method']}"
        async with self.session.post(url, json=params) as response:
            await response.read()

    async def pending(self) -> int:
        engine = self.service.storage.engine  # type: ignore[attr-defined]
        async with engine.connect() as connection:
            count = await connection.scalar(
                select(func.count()).where(
                    outbox.c.topic == "telegram.send", outbox.c.status == "pending"
                )
            )
        return int(count or 0)

    async def settle(self, within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        handler = self.channel.handler
        assert handler is not None
        dispatcher = self.channel.dispatcher
        while True:
            background = getattr(handler, "_background", set())
            # Nothing pending in the outbox, and no delivery still finishing its bookkeeping
            # (its settle committed, its counters not yet counted: on SQLite a settle commits
            # in a batch, and the outbox can read empty before the delivery resumes).
            delivering = dispatcher is not None and dispatcher.inflight > 0
            if not background and not delivering and await self.pending() == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not settled: {await self.pending()} pending")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        await self.runner.cleanup()


@dataclass
class User:
    """A person in a private chat (chat id = user id, as on Telegram)."""

    server: TelegramServer
    fake: FakeTelegramAPI
    id: int
    language_code: str = "en"
    chat_type: str = "private"
    chat_id: int | None = None
    last_update: dict[str, Any] = field(default_factory=dict)

    @property
    def chat(self) -> int:
        return self.chat_id if self.chat_id is not None else self.id

    def _from(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "is_bot": False,
            "first_name": "Sam",
            "language_code": self.language_code,
        }

    def _chat(self) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": self.chat, "type": self.chat_type}
        if self.chat_type == "private":
            chat["first_name"] = "Sam"
        else:
            chat["title"] = "A group"
        return chat

    def message(self, text: str | None = None, **content: Any) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": next(_message_ids),
            "from": self._from(),
            "chat": self._chat(),
            "date": int(time.time()),
            **content,
        }
        if text is not None:
            message["text"] = text
            if text.startswith("/"):
                length = len(text.split(" ", 1)[0])
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        update = {"update_id": next(_update_ids), "message": message}
        self.last_update = update
        return update

    def callback(self, data: str, message_id: int) -> dict[str, Any]:
        update = {
            "update_id": next(_update_ids),
            "callback_query": {
                "id": str(next(_update_ids)),
                "from": self._from(),
                "message": {
                    "message_id": message_id,
                    "from": {"id": 123, "is_bot": True, "first_name": "Care feedback"},
                    "chat": self._chat(),
                    "date": int(time.time()),
                    "text": "a question",
                },
                "chat_instance": "42",
                "data": data,
            },
        }
        self.last_update = update
        return update

    async def say(self, text: str, *, settle: bool = True) -> None:
        status = await self.server.post(self.message(text))
        assert status == 200
        if settle:
            await self.server.settle()

    async def tap(self, choice_id: str, *, settle: bool = True) -> None:
        """Press the newest button with this choice id in what the bot sent this chat."""
        for call in reversed(self.fake.sent(self.chat)):
            if choice_id in buttons(call.params):
                message_id = call.result["message_id"]
                break
        else:
            raise AssertionError(f"no button {choice_id!r}; last keyboard {self.keyboard()}")
        status = await self.server.post(self.callback(choice_id, message_id))
        assert status == 200
        if settle:
            await self.server.settle()

    def texts(self) -> list[str]:
        return self.fake.texts(self.chat)

    def keyboard(self) -> list[str]:
        """The choice ids on the newest message that had buttons."""
        for call in reversed(self.fake.sent(self.chat)):
            ids = buttons(call.params)
            if ids:
                return ids
        return []


WELCOME_STARTS = (
    "Hello.",
    "Tell us about care",
    "This is an automated chat",
    "If someone is in danger",
    "What you tell us is kept private",
)


def paragraphs(text: str) -> list[str]:
    return text.split("\n\n")


def is_welcome(text: str) -> bool:
    """The five welcome messages, joined in order into one Telegram message."""
    found = paragraphs(text)
    return len(found) == len(WELCOME_STARTS) and all(
        p.startswith(start) for p, start in zip(found, WELCOME_STARTS, strict=True)
    )


async def expected_deliveries(
    server: TelegramServer, conversation_id: str
) -> list[tuple[str, list[str]]]:
    """What each turn of the stored transcript should have been sent as: one message, its
    texts (each with its links as "Label: https://..." lines) joined by a blank line, with the
    buttons of its messages in order."""
    view = await server.service.view(conversation_id)
    turns: list[list[dict[str, Any]]] = []
    in_reply = False
    for entry in view.transcript or []:
        if entry["role"] != "bot":
            in_reply = False
            continue
        if not in_reply:
            turns.append([])
            in_reply = True
        turns[-1].append(entry)
    if view.survey_offer is not None and turns:
        # Under the confirmation: the survey offer, with its two buttons (not a transcript line).
        turns[-1].append(view.survey_offer.message().to_record())
    return [
        (
            "\n\n".join(
                "\n".join([e["text"], *(f"{k['label']}: {k['url']}" for k in e.get("links", []))])
                for e in turn
            ),
            [c["id"] for e in turn for c in e.get("choices", [])],
        )
        for turn in turns
    ]


def buttons(params: dict[str, Any]) -> list[str]:
    markup = params.get("reply_markup") or {}
    return [b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row]
