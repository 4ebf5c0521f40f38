"""The one rate limiter: token buckets, refilled evenly, with a burst.

`TokenBuckets` keeps one bucket per key (a conversation, a client network) and answers at once:
allowed, or how long until it would be. `Pacer` waits instead, for code that must slow itself
down to another service's limit (the Telegram outbox). Both live in one process: with several
workers, every limit is per worker.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
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
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate

    def __len__(self) -> int:
        return len(self._buckets)


class Pacer:
    """At most `rate` acquisitions a second on average, bursts up to `burst`; `acquire` waits
    its turn. Shared by everything that calls one external API (Telegram allows ~30/s)."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._bucket = TokenBuckets(
            rate, burst if burst is not None else max(1.0, rate), max_keys=1
        )
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            wait = self._bucket.take()
            while wait > 0:  # a timed wait for a refill: no event to await
                await asyncio.sleep(wait)
                wait = self._bucket.take()
