"""Many simulated people, each walking the intake dialogue over several worker processes.

Consecutive messages of one conversation go to different workers on purpose (round-robin over
the workers still alive); some messages are sent twice at once to two workers; a message
whose worker dies (connection dropped, or a 5xx) is retried with the same client_message_id on
another worker, as the widget does.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.e2e.multiworker_support import Outcomes, Plan, Process, Sent, plan_for

#: A conversation that needs more turns than this has gone round in circles.
MAX_TURNS = 40
#: How many times one message is tried before the conversation gives up.
MAX_ATTEMPTS = 6


class WorkerFailed(Exception):
    """No usable answer from this worker (dropped connection or a 5xx)."""


@dataclass
class Conversation:
    index: int
    plan: Plan
    conversation_id: str = ""
    token: str = ""
    sent: list[Sent] = field(default_factory=list)
    last: dict[str, Any] | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        return bool(self.last and self.last.get("done"))


class Swarm:
    def __init__(
        self,
        workers: list[Process],
        session: aiohttp.ClientSession,
        *,
        duplicate_every: int = 10,
        on_turn: Callable[[], None] | None = None,
    ) -> None:
        self.workers = workers
        self.session = session
        self.outcomes = Outcomes()
        self.killed: dict[str, float] = {}
        self.duplicate_every = duplicate_every
        self.on_turn = on_turn or (lambda: None)
        self.turns = 0
        self.duplicates_sent = 0
        self.retries = 0

    # ------------------------------------------------------------------ workers

    def kill(self, process: Process) -> None:
        self.killed[process.name] = time.monotonic()
        process.kill()

    def alive(self) -> list[Process]:
        return [w for w in self.workers if w.name not in self.killed]

    def pick(self, n: int, *, avoid: Process | None = None) -> Process:
        alive = self.alive()
        if avoid is not None and len(alive) > 1:
            alive = [w for w in alive if w is not avoid]
        return alive[n % len(alive)]

    # ------------------------------------------------------------------ HTTP

    async def _request(
        self, worker: Process, method: str, path: str, **kwargs: Any
    ) -> tuple[int, Any]:
        try:
            async with self.session.request(method, worker.base_url + path, **kwargs) as response:
                raw = await response.read()
                status = response.status
                body: Any = None
                if raw and response.content_type == "application/json":
                    body = await response.json()
                elif raw:
                    body = raw.decode("utf-8", "replace")
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            self.outcomes.failures.append(
                (worker.name, "connection", repr(error), time.monotonic())
            )
            raise WorkerFailed(f"{worker.name}: {error!r}") from error
        self.outcomes.status(worker.name, status)
        if status >= 500:
            self.outcomes.failures.append(
                (worker.name, str(status), str(body)[:200], time.monotonic())
            )
            raise WorkerFailed(f"{worker.name}: HTTP {status} {body}")
        return status, body

    async def _with_retry(
        self, first: int, method: str, path: str, **kwargs: Any
    ) -> tuple[int, Any]:
        worker = self.pick(first)
        for attempt in range(MAX_ATTEMPTS):
            try:
                return await self._request(worker, method, path, **kwargs)
            except WorkerFailed:
                if attempt == MAX_ATTEMPTS - 1:
                    raise
                self.retries += 1
                await asyncio.sleep(0.05 * (attempt + 1))
                worker = self.pick(first + attempt + 1, avoid=worker)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ one person

    async def converse(self, index: int) -> Conversation:
        conversation = Conversation(index, plan_for(index))
        try:
            await self._converse(conversation)
        except Exception as error:  # reported by the test, with the conversation's index
            conversation.error = f"{type(error).__name__}: {error}"
        return conversation

    async def _converse(self, c: Conversation) -> None:
        status, body = await self._with_retry(c.index, "POST", "/api/v1/conversations", json={})
        assert status == 201, (status, body)
        c.conversation_id, c.token, c.last = body["conversation_id"], body["token"], body
        headers = {"Authorization": f"Bearer {c.token}"}
        path = f"/api/v1/conversations/{c.conversation_id}/messages"
        for turn in range(1, MAX_TURNS + 1):
            if c.done:
                return
            assert c.last is not None
            message = c.plan.answer(c.last)
            sent = Sent(f"{c.index}-{turn}-{uuid.uuid4().hex[:8]}", message, c.last["step"])
            payload = {**message, "client_message_id": sent.message_id}
            first = c.index + turn
            if self.duplicate_every and (c.index * 7 + turn) % self.duplicate_every == 0:
                # The same message at two workers at the same moment: one turn, one reply.
                sent.duplicated = True
                self.duplicates_sent += 1
                answers = await asyncio.gather(
                    self._with_retry(first, "POST", path, json=payload, headers=headers),
                    self._with_retry(first + 1, "POST", path, json=payload, headers=headers),
                )
                for status, body in answers:
                    assert status == 200, (status, body)
                a, b = (answer[1] for answer in answers)
                assert _same_reply(a, b), f"a duplicate got a different reply:\n{a}\n{b}"
                reply = a
            else:
                status, reply = await self._with_retry(
                    first, "POST", path, json=payload, headers=headers
                )
                assert status == 200, (status, reply)
            sent.reply = reply
            c.sent.append(sent)
            c.last = reply
            self.turns += 1
            self.on_turn()
        raise AssertionError(f"conversation {c.index} not done after {MAX_TURNS} turns")

    async def transcript(self, c: Conversation) -> dict[str, Any]:
        status, body = await self._with_retry(
            c.index,
            "GET",
            f"/api/v1/conversations/{c.conversation_id}",
            headers={"Authorization": f"Bearer {c.token}"},
        )
        assert status == 200, (status, body)
        return dict(body)


def _same_reply(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("conversation_id", "step", "messages", "done", "reference")
    return all(a.get(k) == b.get(k) for k in keys)


def check_transcript(c: Conversation, transcript: list[dict[str, Any]]) -> list[str]:
    """What is wrong with a conversation's transcript (empty when nothing is): each message
    the client sent appears once, in order, followed by exactly the reply the client got."""
    problems: list[str] = []
    user_positions = [i for i, e in enumerate(transcript) if e["role"] == "user"]
    users = [(transcript[i].get("kind"), transcript[i].get("value")) for i in user_positions]
    expected = [(next(iter(s.body)), next(iter(s.body.values()))) for s in c.sent]
    if users != expected:
        problems.append(f"user turns {users} != sent {expected}")
        return problems
    bounds = [*user_positions, len(transcript)]
    for n, sent in enumerate(c.sent):
        bot = [e for e in transcript[bounds[n] + 1 : bounds[n + 1]]]
        if any(e["role"] != "bot" for e in bot):
            problems.append(f"turn {n + 1}: non-bot entries between user turns")
        assert sent.reply is not None
        shown = [e.get("text") for e in bot]
        replied = [m["text"] for m in sent.reply["messages"]]
        if shown != replied:
            problems.append(
                f"turn {n + 1}: transcript shows {shown!r}, client was told {replied!r}"
            )
    return problems
