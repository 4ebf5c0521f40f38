"""The send limiter (`bot.ratelimit.Pacer`): round-robin across keys, a limit per key."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from bot.ratelimit import Pacer
from tests.fakes.clock import SteppedClock


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


async def test_waiters_that_say_since_when_go_longest_waiting_first() -> None:
    """The outbox says since when each reply has waited (its commit): with the shared limit
    as the bottleneck, the longest waiting goes first, whatever order they reached the pacer
    in (a chat's reply reaches it only once the chat's previous one went)."""
    pacer = Pacer(50.0, burst=1)
    await pacer.acquire("first")  # the burst spent: the others queue
    now = pacer.clock()
    granted: list[str] = []

    async def send(key: str, waited: float) -> None:
        await pacer.acquire(key, now - waited)
        granted.append(key)

    await asyncio.gather(send("c", 1.0), send("a", 3.0), send("b", 2.0), send("d", 0.5))
    assert granted == ["a", "b", "c", "d"]


async def test_a_keys_next_waits_from_its_previous_grant() -> None:
    """A chat's next reply, committed long ago, counts its wait from when the chat's previous
    reply went (as the fair queue does), not from its commit: it does not jump ahead of
    another chat's reply waiting since before that."""
    pacer = Pacer(50.0, burst=1)
    await pacer.acquire("a")
    granted_at = pacer.clock()
    granted: list[str] = []

    async def send(key: str, since: float) -> None:
        await pacer.acquire(key, since)
        granted.append(key)

    await asyncio.gather(send("a", granted_at - 10.0), send("b", granted_at - 0.001))
    assert granted == ["b", "a"]


async def test_the_backlog_is_not_rescanned_while_nobody_can_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the shared limit spent and hundreds of chats waiting (a burst), the pacer looks
    at no waiting chat until a token comes, and at each reply added to the backlog once, not
    with every waiting chat again: the benchmark's Telegram turn had grown from 2.5 to 4.2
    ms of CPU as its backlog grew to about 300 chats."""
    pacer = Pacer(0.5, burst=1)  # the next token in 2 s: the test ends long before
    await pacer.acquire("first")
    waiters = [asyncio.create_task(pacer.acquire(f"chat{n}", pacer.clock())) for n in range(300)]
    await asyncio.sleep(0.01)  # the runner looked at all of them once, and sleeps
    looked: list[str] = []
    walks: list[object] = []
    ready, choose = pacer._ready, pacer._choose

    def counted(key: str) -> float:
        looked.append(key)
        return ready(key)

    def walked() -> tuple[str | None, float]:
        walks.append(None)
        return choose()

    monkeypatch.setattr(pacer, "_ready", counted)
    monkeypatch.setattr(pacer, "_choose", walked)
    pacer._changed.set()  # the runner wakes (as after a grant) while the limit is spent
    await asyncio.sleep(0.01)
    assert looked == [] and walks == []  # it looked at no chat: none could go
    more = [asyncio.create_task(pacer.acquire(f"late{n}", pacer.clock())) for n in range(100)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert pacer.waiting == 400
    assert len(looked) == 100 and walks == []  # each new one once, and no walk
    for task in waiters + more:
        task.cancel()
    await asyncio.gather(*waiters, *more, return_exceptions=True)
    assert pacer.waiting == 0


async def test_a_grant_looks_at_a_few_waiting_keys_not_at_all_of_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With 2,000 chats waiting and then 2,000 shared tokens at once, each grant reads about
    one chat's own bucket (the waiting keys are kept in a heap by rank), where walking every
    waiting chat for each grant read about 2,000,000 of them in all."""
    clock = SteppedClock()
    pacer = Pacer(1.0, burst=2000, per_key_rate=1.0, per_key_burst=1, clock=clock)
    assert pacer._per_key is not None
    for n in range(2000):  # the shared burst spent: every chat below waits
        await pacer.acquire(f"spent{n}")
    looks: list[str] = []
    wait = pacer._per_key.wait

    def counted(key: str = "") -> float:
        looks.append(key)
        return wait(key)

    monkeypatch.setattr(pacer._per_key, "wait", counted)
    granted: list[int] = []

    async def send(n: int) -> None:
        await pacer.acquire(f"chat{n}", -float(n))  # chat0 has waited least
        granted.append(n)

    tasks = [asyncio.create_task(send(n)) for n in range(2000)]
    await asyncio.sleep(0)
    assert granted == [] and pacer.waiting == 2000
    clock.now = 2000.0  # 2,000 tokens
    pacer._changed.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    assert granted == list(range(1999, -1, -1))  # longest waiting first
    # Each chat read once on arrival (`_ready`) and once when it came up: no walk.
    assert len(looks) <= 2 * 2000 + 10


def _reference_order(
    arrivals: list[tuple[str, float | None]], steps: int, per_key_rate: float, per_key_burst: float
) -> list[int]:
    """Which waiter (by its index in `arrivals`) each one-second step grants, by the rule the
    pacer documents, walked in full: among the waiting keys whose own bucket has a token,
    the lowest rank (-inf for a waiter that did not say since when, else the later of its
    since and its key's last grant), ties to the key earliest in the round (the order keys
    started waiting, a granted key going to the back)."""
    queues: dict[str, list[int]] = {}
    for index, (key, _since) in enumerate(arrivals):
        queues.setdefault(key, []).append(index)
    round_order = list(queues)
    tokens = {key: per_key_burst for key in queues}
    granted_at: dict[str, float] = {}
    order: list[int] = []
    for step in range(1, steps + 1):
        if step > 1:
            for key in tokens:
                tokens[key] = min(per_key_burst, tokens[key] + per_key_rate)
        best: tuple[float, int, str] | None = None
        for position, key in enumerate(round_order):
            if tokens[key] < 1.0:
                continue
            since = arrivals[queues[key][0]][1]
            rank = float("-inf") if since is None else max(since, granted_at.get(key, -1e18))
            if best is None or (rank, position) < best[:2]:
                best = (rank, position, key)
        if best is None:
            continue
        key = best[2]
        order.append(queues[key].pop(0))
        tokens[key] -= 1.0
        granted_at[key] = float(step)
        round_order.remove(key)
        if queues[key]:
            round_order.append(key)
        else:
            del queues[key]
    return order


@pytest.mark.parametrize("seed", range(6))
async def test_the_pacer_grants_in_the_order_its_rule_gives(seed: int) -> None:
    """Random backlogs (several waiters a chat, some that do not say since when, a limit
    per chat that holds chats back): on a clock stepped a second at a time, one grant a
    step, the pacer grants exactly the order of the rule walked in full over every
    waiting chat (`_reference_order`)."""
    import random

    rng = random.Random(seed)
    clock = SteppedClock()
    per_key_rate, per_key_burst = 0.25, 2.0
    pacer = Pacer(1.0, burst=1, per_key_rate=per_key_rate, per_key_burst=per_key_burst, clock=clock)
    await pacer.acquire("spent")  # the shared token of second 0: every waiter below queues
    arrivals: list[tuple[str, float | None]] = []
    for _ in range(rng.randint(10, 40)):
        key = f"chat{rng.randint(0, 7)}"
        since = None if rng.random() < 0.15 else -float(rng.randint(0, 30))
        arrivals.append((key, since))
    granted: list[int] = []

    async def send(index: int) -> None:
        key, since = arrivals[index]
        await pacer.acquire(key, since)
        granted.append(index)

    tasks = []
    for index in range(len(arrivals)):
        tasks.append(asyncio.create_task(send(index)))
        await asyncio.sleep(0)  # each reaches the pacer in turn, as the outbox's replies do
    steps = 4 * len(arrivals) + 8
    for step in range(1, steps + 1):
        clock.now = float(step)
        pacer._changed.set()
        for _ in range(20):
            await asyncio.sleep(0)
    assert granted == _reference_order(arrivals, steps, per_key_rate, per_key_burst)
    assert len(granted) == len(arrivals)
    await asyncio.gather(*tasks)
