"""Signed HTTP deliveries (urgent-alert webhook, case-system hand-off): Standard Webhooks.

Headers `webhook-id` (stable per message: a retry repeats it), `webhook-timestamp` (Unix
seconds) and `webhook-signature` = "v1," + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")),
the key given as "whsec_" + base64(key). A 2xx answer is success; anything else, or no
answer, is retried by the dispatcher. Bodies are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import aiohttp

from bot.outbox.failures import RetryLater


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify(key: bytes, message_id: str, timestamp: str, body: bytes, signatures: str) -> bool:
    """True when one of the space-separated `v1,` signatures matches (for receivers, tests)."""
    expected = sign(key, message_id, int(timestamp), body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures.split())


class WebhookSender:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        key: bytes,
        *,
        timeout: float = 15.0,
    ) -> None:
        self.session = session
        self.url = url
        self.key = key
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def post(self, message_id: str, body: bytes, *, idempotency_key: str) -> None:
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self.key, message_id, timestamp, body),
            "idempotency-key": idempotency_key,
        }
        try:
            async with self.session.post(
                self.url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False
            ) as response:
                await response.read()
                if not 200 <= response.status < 300:
                    raise RetryLater(f"http_{response.status}")
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise RetryLater(f"http_{type(error).__name__}") from None
