"""The Telegram send pacer's CPU per grant against how many chats wait (`bot.ratelimit.Pacer`).

In-process, on a stepped clock: N chats wait with the shared limit spent, each saying since
when (as the outbox's replies do), then N shared tokens come at once and every chat is
granted, longest waiting first. CPU per grant (`time.process_time`, best of 5) with the
outbox dispatcher's 256 replies in hand against 16: choosing must not walk the backlog.
"""

from __future__ import annotations

import asyncio
import time

from bench.common import Row, fmt, ratio, yes_no

#: The Telegram outbox dispatcher's replies in hand at most (`TelegramOptions.concurrency`).
IN_HAND = 256
FEW = 16
MANY = 2000
TARGET_RATIO = 1.5


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _per_grant_us(waiting: int) -> float:
    from bot.ratelimit import Pacer

    clock = _Clock()
    pacer = Pacer(1.0, burst=waiting, per_key_rate=1.0, per_key_burst=1, clock=clock)
    for n in range(waiting):  # the shared burst spent: the chats below wait
        await pacer.acquire(f"spent{n}")
    waiters = [
        asyncio.create_task(pacer.acquire(f"chat{n}", -float(n % 97))) for n in range(waiting)
    ]
    await asyncio.sleep(0)
    started = time.process_time()
    clock.now = float(waiting)  # as many shared tokens as chats
    pacer._changed.set()
    await asyncio.gather(*waiters)
    return (time.process_time() - started) / waiting * 1e6


def per_grant_us(waiting: int, repeats: int = 5) -> float:
    return min(asyncio.run(_per_grant_us(waiting)) for _ in range(repeats))


def row(quick: bool = False) -> Row:
    repeats = 3 if quick else 5
    few, in_hand, many = (per_grant_us(n, repeats) for n in (FEW, IN_HAND, MANY))
    out = Row(
        f"telegram send pacer: CPU per grant, {IN_HAND} chats waiting vs {FEW}",
        fmt(in_hand, " µs"),
        fmt(few, " µs"),
        ratio(in_hand, few),
        f"≤ {TARGET_RATIO}x",
        yes_no(in_hand <= TARGET_RATIO * few),
    )
    out.note = (
        f"in-process, stepped clock: that many chats waiting with the shared limit spent, "
        f"then as many tokens at once, longest waiting first; best of {repeats}; "
        f"{MANY:,} chats waiting: {fmt(many, ' µs')} a grant"
    )
    return out
