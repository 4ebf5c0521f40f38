"""The send limiter (`bot.ratelimit.Pacer`): round-robin across keys, a limit per key."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from bot.ratelimit import Pacer


async def test_the_pacer_serves_waiting_keys_round_robin() -> None:
    """One chat queues four sends, then two other chats one each: with the shared limit as
    the bottleneck, the other chats' sends go before the first chat's third (not first come,
    first served across all)."""
    pacer = Pacer(50.0, burst=1)
    granted: list[str] = []

    async def send(name: str) -> None:
        await pacer.acquire(name[0])
        granted.append(name)

    await asyncio.gather(*(send(name) for name in ("a1", "a2", "a3", "a4", "b1", "c1")))
    assert granted.index("b1") < granted.index("a3")
    assert granted.index("c1") < granted.index("a3")
    assert [name for name in granted if name[0] == "a"] == ["a1", "a2", "a3", "a4"]


async def test_a_key_over_its_own_limit_holds_up_no_other_key() -> None:
    pacer = Pacer(1000.0, per_key_rate=0.0001, per_key_burst=1)  # a key's second never comes
    await pacer.acquire("a")
    blocked = asyncio.create_task(pacer.acquire("a"))
    await asyncio.sleep(0)
    assert pacer.waiting == 1
    await asyncio.wait_for(pacer.acquire("b"), timeout=10)  # a guard, not a timing
    assert not blocked.done()
    blocked.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await blocked
    assert pacer.waiting == 0
    with pytest.raises(ValueError, match="positive"):
        Pacer(0.0)
