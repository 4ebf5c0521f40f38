"""The load generator: its own process, raw asyncio streams, HTTP/1.1 keep-alive.

    python -m bench.loadgen MODE --port P (--concurrency C | --rate R) --duration S [--warmup S]

MODE: `web` (conversations through the web chat API, driven to submission), `telegram` (the
same conversations as webhook updates), `interleaved` (a web conversation and a Telegram chat
taking turns: one web turn, then one update, then the next web turn, each channel's
latencies apart in "channels"), `ceiling` (POST /ceiling, one insert-and-commit).
Closed loop (`--concurrency C`): C conversations at once, each sends its next turn when the
last one is answered. Open loop (`--rate R`): turns are sent on a fixed schedule, whatever is
outstanding, each by an idle conversation chosen at random; latency is measured from the
scheduled time, so a slow server cannot hide its queue (no coordinated omission), and the
turns measured are those scheduled after the warm-up (`carried_in` counts the warm-up's that
were still waiting when the window opened). Before its clock starts, the open loop drives
its conversations, unmeasured, to steps spread evenly over the script (`phases`), as people
are at every step at any moment; `--start together` starts every one at its first turn
instead. Prints one JSON object: rate, latency percentiles, errors, and the generator's own
CPU use (to show whether it, rather than the server, was the limit), and, from an app that
answers /metrics, its write batches over the window ("window_batches": read just before the
window opens and once its turns are answered, so that the conversations' spreading, whose
burst makes long batches of its own, is not counted).

Requests are pre-built bytes; only the responses that carry what the next request needs (the
conversation id and token) or prove the result (the reference after submit) are parsed.
Every request that is answered 2xx counts as one durable turn: the service commits before it
answers (creating a conversation is its first turn, a transaction of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import math
import os
import random
import resource
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from bench import write_batches
from bench.common import HOST
from bench.script import SCRIPT

#: The open loop's choice of conversation for each turn (`run`): random, the same every run.
OPEN_LOOP_SEED = 16
#: Conversations driven at once to their starting steps (`phases`), before the clock starts.
SPREAD_CONCURRENCY = 50
SECRET = "bench-webhook-secret-0123456789"
#: How long before the window opens its write batches are first read ("window_batches").
WINDOW_BATCHES_LEAD_S = 0.25


class Http:
    """One keep-alive connection; `call` sends a request and returns (status, body)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port, limit=1 << 20)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def call(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        at = head.lower().find(b"\r\ncontent-length:")
        if at < 0:
            raise RuntimeError(f"no Content-Length in response: {head[:200]!r}")
        length = int(head[at + 17 : head.index(b"\r\n", at + 2)])
        body = await self.reader.readexactly(length) if length else b""
        if b"\r\nconnection: close" in head.lower():
            self.writer.close()
            self.writer = self.reader = None
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def post(path: str, body: bytes, port: int, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


class Failure(Exception):
    pass


# ---------------------------------------------------------------------------- conversations


class Client:
    """One client of the loop on a keep-alive connection of its own."""

    #: The channel of the turn last sent, which its latency is counted under ("channels").
    channel: ClassVar[str]

    def __init__(self, port: int) -> None:
        self.http = Http(port)
        self.port = port
        self.completed = 0

    async def open(self) -> None:
        await self.http.open()

    def close(self) -> None:
        self.http.close()

    def restart(self) -> None:
        """After a failed turn: a new connection, and what `forget` says."""
        self.http.close()
        self.http = Http(self.port)
        self.forget()

    def forget(self) -> None:
        """What a failed turn leaves behind: nothing here."""

    def channels(self) -> tuple[str, ...]:
        """The channels of the turns this client sends."""
        return (self.channel,)


class WebConversation(Client):
    """Creates a conversation, then sends the script's turns; starts again after submit."""

    channel = "web"

    bodies: ClassVar[list[bytes]] = [
        (json.dumps({t.kind: t.value})[:-1] + ', "client_message_id": "').encode() for t in SCRIPT
    ]

    #: Leave a conversation open after this many turns and start another (0: to submission).
    turns_per_conversation = 0

    @classmethod
    def cycle(cls) -> int:
        """Turns from one conversation's creation to the next's (`phases`)."""
        if cls.turns_per_conversation < 0:
            return 1
        return 1 + (cls.turns_per_conversation or len(SCRIPT))

    def __init__(self, port: int, ids: itertools.count[int]) -> None:
        super().__init__(port)
        self.ids = ids
        self.index = -1  # -1: create next
        self.path = ""
        self.auth = ""

    def forget(self) -> None:
        self.index = -1  # a new conversation next

    async def next_turn(self) -> None:
        if self.index < 0:
            status, body = await self.http.call(
                post("/api/v1/conversations", b'{"locale": "en"}', self.port)
            )
            if status != 201:
                raise Failure(f"create: {status} {body[:200]!r}")
            data = json.loads(body)
            self.path = f"/api/v1/conversations/{data['conversation_id']}/messages"
            self.auth = f"Authorization: Bearer {data['token']}\r\n"
            self.index = 0
            if self.turns_per_conversation < 0:  # open conversations only
                self.completed += 1
                self.index = -1
            return
        body = self.bodies[self.index] + str(next(self.ids)).encode() + b'"}'
        status, answer = await self.http.call(post(self.path, body, self.port, self.auth))
        if status != 200:
            raise Failure(f"turn {SCRIPT[self.index].step}: {status} {answer[:300]!r}")
        self.index += 1
        if self.turns_per_conversation and self.index >= self.turns_per_conversation:
            self.completed += 1
            self.index = -1
            return
        if self.index == len(SCRIPT):
            if not json.loads(answer).get("reference"):
                raise Failure(f"submitted without a reference: {answer[:300]!r}")
            self.completed += 1
            self.index = -1


class TelegramConversation(Client):
    """One chat after another: /start then the script, as webhook updates."""

    shown: ClassVar[list[Any]] = []
    channel = "telegram"

    @classmethod
    def cycle(cls) -> int:
        return 1 + len(SCRIPT)

    def __init__(
        self, port: int, chats: itertools.count[int], update_ids: itertools.count[int]
    ) -> None:
        from bench import updates

        super().__init__(port)
        self.chats = chats
        self.update_ids = update_ids
        self.updates = updates
        self.queue: list[bytes] = []
        self.extra = f"X-Telegram-Bot-Api-Secret-Token: {SECRET}\r\n"

    def forget(self) -> None:
        self.queue = []  # a new chat next

    async def next_turn(self) -> None:
        if not self.queue:
            conversation = self.updates.conversation_updates(next(self.chats), self.shown)
            for update in conversation:
                update["update_id"] = next(self.update_ids)
            self.queue = [
                post("/telegram/webhook", json.dumps(u).encode(), self.port, self.extra)
                for u in reversed(conversation)
            ]
        status, body = await self.http.call(self.queue.pop())
        if status != 200:
            raise Failure(f"webhook: {status} {body[:300]!r}")
        if not self.queue:
            self.completed += 1


class Interleaved:
    """A web conversation and a Telegram chat taking turns, one request in flight: the two
    channels' turns meet the same server at the same moments, so a drift of the machine's
    speed between two runs (the one-at-a-time pairs' noise, BENCHMARKS.md) falls on both."""

    @classmethod
    def cycle(cls) -> int:
        """Turns from the pair's start to where both start again (`phases`)."""
        return WebConversation.cycle() + TelegramConversation.cycle()

    def __init__(self, web: WebConversation, telegram: TelegramConversation) -> None:
        self.clients: tuple[WebConversation | TelegramConversation, ...] = (web, telegram)
        self.turns: Iterator[WebConversation | TelegramConversation] = itertools.cycle(self.clients)
        self.current: WebConversation | TelegramConversation = web

    @property
    def channel(self) -> str:
        return self.current.channel

    @property
    def completed(self) -> int:
        return sum(client.completed for client in self.clients)

    def channels(self) -> tuple[str, ...]:
        return tuple(client.channel for client in self.clients)

    async def open(self) -> None:
        await asyncio.gather(*(client.open() for client in self.clients))

    def restart(self) -> None:
        self.current.restart()

    async def next_turn(self) -> None:
        self.current = next(self.turns)
        await self.current.next_turn()

    def close(self) -> None:
        for client in self.clients:
            client.close()


class CeilingClient(Client):
    channel = "ceiling"

    @classmethod
    def cycle(cls) -> int:
        return 1

    def __init__(self, port: int, ids: itertools.count[int]) -> None:
        super().__init__(port)
        self.ids = ids

    async def next_turn(self) -> None:
        body = (
            b'{"choice": "neither", "client_message_id": "' + str(next(self.ids)).encode() + b'"}'
        )
        status, answer = await self.http.call(post("/ceiling", body, self.port))
        if status != 200:
            raise Failure(f"ceiling: {status} {answer[:200]!r}")


# ---------------------------------------------------------------------------- loops


def phases(clients: int, cycle: int) -> list[int]:
    """How many turns each of `clients` conversations is driven through before the open loop
    starts: evenly over a conversation's `cycle` turns, so that as many are at each step."""
    return [i * cycle // clients for i in range(clients)]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def latency_summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    """Turns, their rate and latency percentiles (ms) of measured turns: a channel's, or the
    run's."""
    ordered = sorted(latencies)
    return {
        "turns": len(ordered),
        "rate": len(ordered) / elapsed,
        "p50_ms": percentile(ordered, 50) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
        "max_ms": (ordered[-1] * 1000) if ordered else float("nan"),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    ids = itertools.count(1)
    base = (os.getpid() % 10_000) * 10_000_000 + int(time.time()) % 1_000_000 * 10
    chats, update_ids = itertools.count(base), itertools.count(base)
    make: Callable[[], Any]
    if args.mode == "web":
        WebConversation.turns_per_conversation = args.turns_per_conversation
        make = lambda: WebConversation(args.port, ids)  # noqa: E731
    elif args.mode in ("telegram", "interleaved"):
        from bench.updates import prompts

        TelegramConversation.shown = prompts()
        make = lambda: TelegramConversation(args.port, chats, update_ids)  # noqa: E731
        if args.mode == "interleaved":
            chat = make
            make = lambda: Interleaved(WebConversation(args.port, ids), chat())  # noqa: E731
    else:
        make = lambda: CeilingClient(args.port, ids)  # noqa: E731

    clients = [make() for _ in range(args.concurrency)]
    await asyncio.gather(*(c.open() for c in clients))
    loop = asyncio.get_running_loop()
    # Nothing is measured until the clock starts (after the conversations are spread).
    window_start = deadline = math.inf
    #: The measured latencies by the channel of the turn: every client's channels, so that
    #: one whose every turn failed is there too, with no turns. The run's are all of them.
    by_channel: dict[str, list[float]] = {
        channel: [] for client in clients for channel in client.channels()
    }
    errors: list[str] = []
    #: Every request answered, unmeasured ones too (spreading, warm-up): the server's CPU
    #: per turn is its CPU over these (`bench.web_turns.cpu_ms`).
    answered = 0
    #: Open loop: warm-up turns answered after the clock started (a backlog left by the
    #: warm-up): not measured, only counted.
    carried_in = 0

    def measured(scheduled: float, now: float) -> bool:
        """Whether a turn answered at `now` is measured. Open loop: the turns scheduled
        in the window, wherever they end (a late answer is measured, not dropped), and none
        scheduled in the warm-up, however long they waited: a cold server's backlog is the
        warm-up's. Closed loop: the turns answered in the window."""
        if scheduled > deadline or now < window_start:
            return False
        return scheduled >= window_start or not args.rate

    async def one(client: Any, scheduled: float) -> None:
        nonlocal answered, carried_in
        try:
            await client.next_turn()
        except (Failure, OSError, asyncio.IncompleteReadError, ValueError) as error:
            errors.append(f"{type(error).__name__}: {error}"[:300])
            client.restart()
            return
        answered += 1
        now = loop.time()
        if measured(scheduled, now):
            by_channel[client.channel].append(now - scheduled)
        elif scheduled < window_start <= now:
            carried_in += 1

    async def advance(client: Any, turns: int, slots: asyncio.Semaphore) -> None:
        async with slots:
            for _ in range(turns):
                await one(client, math.inf)

    prepared = 0
    if args.rate and args.start == "staggered":
        # Started together, every conversation was at the same step at first, so none could
        # submit (the heaviest turn: the report's transaction, its outbox fan-out) before
        # its 19 turns: a window held few reports when a conversation outlasted it, else a
        # wave of them at two to three times the steady rate (BENCHMARKS.md). People are at
        # every step at any moment: the conversations are first driven, unmeasured, to steps
        # spread evenly over the script, then the clock starts.
        turns = phases(len(clients), type(clients[0]).cycle())
        slots = asyncio.Semaphore(SPREAD_CONCURRENCY)
        await asyncio.gather(*(advance(c, n, slots) for c, n in zip(clients, turns, strict=True)))
        prepared = sum(turns)
    started = loop.time()
    window_start = started + args.warmup
    deadline = window_start + args.duration

    async def batches_at(when: float) -> write_batches.Batches | None:
        """The app's write batches so far, read at `when` (None: no /metrics there)."""
        await asyncio.sleep(max(0.0, when - loop.time()))
        return await asyncio.to_thread(write_batches.read, args.port)

    # Read a little before the window opens: a scrape costs the server a few milliseconds
    # (it reads the outbox's gauges from the database), which then fall on warm-up turns.
    opening_batches = asyncio.create_task(
        batches_at(max(started, window_start - WINDOW_BATCHES_LEAD_S))
    )

    if args.rate:
        # Each scheduled turn goes to an idle conversation chosen at random (the same choices
        # every run). Handed out in turn, the conversations moved in lockstep: all 50 reached
        # the same step together, so every 3.5 s (19 turns at 272/s) all of them submitted
        # within 0.2 s, 50 of the heaviest turns at once, as no real traffic does; the p99
        # was that burst's (BENCHMARKS.md). People answer at their own pace.
        idle = list(clients)
        available = asyncio.Semaphore(len(clients))
        choose = random.Random(OPEN_LOOP_SEED).randrange
        tasks = set()

        async def scheduled_turn(at: float) -> None:
            await available.acquire()
            client = idle.pop(choose(len(idle)))
            try:
                await one(client, at)
            finally:
                idle.append(client)
                available.release()

        for i in itertools.count():
            at = started + i / args.rate
            if at > deadline:
                break
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(scheduled_turn(at))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=args.drain)
    else:
        budget = itertools.count(1)

        async def worker(client: Any) -> None:
            while loop.time() < deadline and len(errors) < 50:
                if args.count and next(budget) > args.count:
                    break
                await one(client, loop.time())

        await asyncio.gather(*(worker(c) for c in clients))
    for c in clients:
        c.close()
    opened, closed = await opening_batches, await batches_at(loop.time())
    window_batches = closed - opened if opened is not None and closed is not None else None
    elapsed = args.duration if not args.count else loop.time() - window_start
    every_turn = [latency for turns in by_channel.values() for latency in turns]
    return {
        "mode": args.mode,
        "concurrency": args.concurrency,
        "offered_rate": args.rate,
        **latency_summary(every_turn, elapsed),
        "answered": answered,
        "carried_in": carried_in,
        "errors": len(errors),
        "first_errors": errors[:3],
        "conversations_completed": sum(c.completed for c in clients),
        "start": args.start if args.rate else "together",
        "prepared_turns": prepared,
        "window_batches": dataclasses.asdict(window_batches) if window_batches else None,
        "channels": {
            channel: latency_summary(measured_turns, elapsed)
            for channel, measured_turns in by_channel.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("mode", choices=("web", "telegram", "interleaved", "ceiling"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: turns per second")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument(
        "--count", type=int, default=0, help="closed loop: stop after this many requests"
    )
    parser.add_argument(
        "--turns-per-conversation",
        type=int,
        default=0,
        help="web: leave each conversation open after this many turns (0: submit, -1: create only)",
    )
    parser.add_argument(
        "--start",
        choices=("staggered", "together"),
        default="staggered",
        help="open loop: conversations spread over the script first (default), or all at the first turn",
    )
    parser.add_argument(
        "--drain", type=float, default=30.0, help="open loop: wait this long for stragglers"
    )
    args = parser.parse_args()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    wall_before = time.monotonic()
    result = asyncio.run(run(args))
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic() - wall_before
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    result["generator_cpu_share"] = cpu / wall if wall else 0.0
    result["wall_s"] = wall
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
