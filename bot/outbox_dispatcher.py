"""Moved to `bot.outbox.dispatcher`; kept so existing imports keep working."""

from bot.outbox.dispatcher import (
    Deliver,
    OutboxDispatcher,
    Outcome,
    RateLimiter,
    audit_payload,
    backoff,
)

__all__ = ["Deliver", "OutboxDispatcher", "Outcome", "RateLimiter", "audit_payload", "backoff"]
