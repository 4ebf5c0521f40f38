"""How an adapter says a send failed: worth retrying later, or never going to work.

Adapters raise these; the dispatcher's routes turn them into retries with backoff or dead
letters. `reason` is a short counter name, never message text or an address.
"""

from __future__ import annotations


class DeliveryFailure(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryLater(DeliveryFailure):
    """The receiving side is down, busy or refused for now."""


class Permanent(DeliveryFailure):
    """The receiving side said no for good (a rejected address, a malformed request)."""
