"""The one rate limiter: token buckets, refilled evenly, with a burst.

`TokenBuckets` keeps one bucket per key (a conversation, a client network) and answers at once:
allowed, or how long until it would be. `Pacer` waits instead, for code that must slow itself
down to another service's limit (the Telegram outbox), optionally with a second limit per key
(per chat) and waiters served round-robin across keys, so a burst from one key cannot starve
the others. Both live in one process: with several workers, every limit is per worker.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """Token buckets keyed by a string. Memory is bounded: at most `max_keys` buckets, least
    recently used dropped first (a dropped bucket is simply full again, which errs on the side
    of letting people talk)."""

    def __init__(
        self,
        per_second: float,
        burst: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("the rate must be positive and the burst at least 1")
        self.capacity = float(burst)
        self._rate = per_second
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @classmethod
    def per_minute(
        cls,
        count: int,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> TokenBuckets:
        """`count` a minute, refilled evenly, with a burst of the same size."""
        count = max(count, 1)
        return cls(count / 60.0, float(count), max_keys=max_keys, clock=clock)

    def take(self, key: str = "") -> float:
        """Spend one token; returns 0 when allowed, else the seconds until one is free."""
        bucket = self._refilled(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate

    def wait(self, key: str = "") -> float:
        """Like `take` without spending: 0 when a token is there, else the seconds until."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = min(self.capacity, bucket.tokens + (self._clock() - bucket.updated) * self._rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self._rate

    def _refilled(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.capacity, now)
            self._buckets[key] = bucket
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self._rate)
            bucket.updated = now
        return bucket

    def __len__(self) -> int:
        return len(self._buckets)


class Pacer:
    """At most `rate` acquisitions a second on average, bursts up to `burst`; `acquire` waits
    its turn. Shared by everything that calls one external API (Telegram allows ~30 messages a
    second per bot, and about one a second per chat).

    `acquire(key)` also spends from the key's own bucket when `per_key_rate` is set. Waiters
    are served round-robin across keys, first come first served within a key: when the shared
    limit is the bottleneck, every waiting key gets one grant before any key gets a second,
    whatever order they queued in. A key held back by its own limit does not hold up others.

    `acquire(key, since=...)`: the caller has been waiting since then already (the outbox:
    since its message was committed). Among such waiters the one waiting longest goes first,
    counted from the later of `since` and the key's previous grant (a chat's next message
    waits from when its previous one went, as in a fair queue), ahead of the round-robin
    order in which they reached the pacer: a reply that reached it last, because its chat's
    previous reply had to go first, no longer waits behind every one in hand. Waiters that
    do not say go first, round-robin among themselves (rare notes, not the outbox).

    Choosing costs O(log n) in the waiting keys: they sit in a heap by (rank, place in the
    round), and a key held back by its own limit is set aside in a second heap by when it
    may go, until then. Walking every waiting key for each grant, as this did before, cost
    the outbox's 256 replies in hand about 7,700 looks a second at Telegram's 30 a second.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        per_key_rate: float | None = None,
        per_key_burst: float | None = None,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._bucket = TokenBuckets(
            rate, burst if burst is not None else max(1.0, rate), max_keys=1, clock=clock
        )
        self._per_key: TokenBuckets | None = None
        if per_key_rate is not None:
            self._per_key = TokenBuckets(
                per_key_rate,
                per_key_burst if per_key_burst is not None else 1.0,
                max_keys=max_keys,
                clock=clock,
            )
        #: Each waiting key's waiters in arrival order (and since when each has been
        #: waiting, if it said).
        self._queues: dict[str, deque[tuple[float | None, asyncio.Future[None]]]] = {}
        #: The waiting keys that may go as soon as the shared limit allows, as far as known:
        #: (rank, place in the round, stamp, key), lowest first (`_rank`). A key's place is
        #: taken when it starts waiting, and again, at the back, after each grant.
        self._ranked: list[tuple[float, int, int, str]] = []
        #: The waiting keys held back by their own limit: (when it may go, place, stamp, key).
        self._held: list[tuple[float, int, int, str]] = []
        #: Each waiting key's current entry, in one of the two heaps: (stamp, place). An
        #: entry whose stamp is not its key's is stale and skipped when it comes up.
        self._entries: dict[str, tuple[int, int]] = {}
        self._stamps = itertools.count()
        self._places = itertools.count()
        #: When each key was last granted (this pacer's clock), the most recent `max_keys`.
        self._granted: OrderedDict[str, float] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock
        self._changed = asyncio.Event()
        #: While the runner sleeps until the next token: when it wakes (this pacer's clock).
        #: A new waiter that cannot be served before then need not wake it (`acquire`).
        self._sleeping_until = float("inf")
        self._runner: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def clock(self) -> float:
        """This pacer's clock, the one `since` is on."""
        return self._clock()

    async def acquire(self, key: str = "", since: float | None = None) -> None:
        if not self._queues and self._ready(key) == 0.0:
            self._spend(key)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (since, future)
        keys_waiters = self._queues.setdefault(key, deque())
        keys_waiters.append(waiter)
        if len(keys_waiters) == 1:
            self._rank(key, next(self._places))
            if self._clock() + self._ready(key) < self._sleeping_until:
                # A new key that may go before the runner would wake: it looks again.
                # Otherwise the runner need not wake only to find nobody ready.
                self._changed.set()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._serve(), name="pacer")
        try:
            await future
        except asyncio.CancelledError:
            queue = self._queues.get(key)
            if queue is not None and waiter in queue:
                first = queue[0] is waiter
                queue.remove(waiter)
                if not queue:
                    self._forget(key)
                elif first:  # the key's rank was its first waiter's: it keeps its place
                    self._rank(key, self._entries[key][1])
            raise

    def _rank(self, key: str, place: int) -> None:
        """Put a waiting key in the heap of those that may go, ranked by its first waiter,
        at `place` in the round; any entry it had goes stale."""
        stamp = next(self._stamps)
        self._entries[key] = (stamp, place)
        rank = self._waiting_since(key, self._queues[key][0][0])
        heapq.heappush(self._ranked, (rank, place, stamp, key))

    def _forget(self, key: str) -> None:
        """A key nobody waits for any more; its heap entries go stale."""
        del self._queues[key]
        del self._entries[key]
        if not self._queues:  # nothing current is left in either heap
            self._ranked.clear()
            self._held.clear()

    def _ready(self, key: str) -> float:
        wait = self._bucket.wait()
        if self._per_key is not None:
            wait = max(wait, self._per_key.wait(key))
        return wait

    def _spend(self, key: str) -> None:
        self._bucket.take()
        if self._per_key is not None:
            self._per_key.take(key)
        self._granted[key] = self._clock()
        self._granted.move_to_end(key)
        while len(self._granted) > self._max_keys:
            self._granted.popitem(last=False)

    def _waiting_since(self, key: str, since: float | None) -> float:
        """The rank of a key's first waiter: lowest goes first."""
        if since is None:
            return float("-inf")
        return max(since, self._granted.get(key, float("-inf")))

    def _choose(self) -> tuple[str | None, float]:
        """The key to grant next, if any is ready, else None and the soonest one's wait:
        longest waiting first among keys whose first waiter said since when, else the first
        ready one in round-robin order. Only while the shared bucket has a token (`_serve`
        looked), so each key's own bucket is all there is to read. Taken out of the heaps;
        keys found held back by their own limit are moved aside until they may go."""
        per_key = self._per_key
        now = self._clock()
        held, ranked, entries = self._held, self._ranked, self._entries
        while held and held[0][0] <= now:  # their own limit allows them again
            _at, place, stamp, key = heapq.heappop(held)
            if entries.get(key, (None,))[0] == stamp:
                self._rank(key, place)
        while ranked:
            _rank, place, stamp, key = ranked[0]
            if entries.get(key, (None,))[0] != stamp:
                heapq.heappop(ranked)
                continue
            wait = 0.0 if per_key is None else per_key.wait(key)
            if wait > 0.0:
                heapq.heappop(ranked)
                stamp = next(self._stamps)
                entries[key] = (stamp, place)
                heapq.heappush(held, (now + wait, place, stamp, key))
                continue
            heapq.heappop(ranked)
            return key, 0.0
        while held and entries.get(held[0][3], (None,))[0] != held[0][2]:
            heapq.heappop(held)
        return None, (max(0.0, held[0][0] - now) if held else float("inf"))

    async def _serve(self) -> None:
        """Grant tokens to waiters, longest waiting first among those that said since when,
        else round-robin over keys, until nobody waits."""
        while self._queues:
            self._changed.clear()
            looked_at = self._clock()
            shared = self._bucket.wait()
            # With the shared limit spent nobody can go yet: no key need be looked at (with
            # a backlog of hundreds of chats, a walk over all of them after every grant).
            chosen, soonest = (None, shared) if shared > 0.0 else self._choose()
            if chosen is not None:
                queue = self._queues[chosen]
                _since, future = queue.popleft()
                if not future.done():  # a cancelled waiter may not have left the queue yet
                    self._spend(chosen)
                    future.set_result(None)
                if queue:
                    self._rank(chosen, next(self._places))  # to the back of the round
                else:
                    self._forget(chosen)
                soonest = 0.0
            if soonest == 0.0:
                await asyncio.sleep(0)  # let the granted waiter run
            elif self._queues:
                # Sleep until the next token, or until a new key queues that may go sooner.
                # Counted from before the keys were looked at: never later than the first of
                # them is ready.
                self._sleeping_until = looked_at + soonest
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=soonest)
                except TimeoutError:
                    pass
                finally:
                    self._sleeping_until = float("inf")
