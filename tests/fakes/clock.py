"""A clock that stands still until a test sets it: for the rate limiters
(`bot.ratelimit.TokenBuckets`, `Pacer`), which take a `clock` returning seconds."""

from __future__ import annotations


class SteppedClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
