"""Signed, expiring links in alert emails (acknowledge an urgent report).

The link names the report and the person it was sent to, and carries an HMAC of both with
the expiry, made with a key the service keeps in its database (shared by every worker). It
lets exactly that person acknowledge exactly that report until it expires; it shows nothing
of the report itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlencode

ACK_PATH = "/alerts/ack"
ACK_LINK_DAYS = 7


def _signature(key: bytes, reference: str, by: str, expires: int) -> str:
    digest = hmac.new(key, f"ack\n{reference}\n{by}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def ack_url(public_url: str, key: bytes, reference: str, by: str, expires: int) -> str:
    query = urlencode(
        {"ref": reference, "by": by, "exp": expires, "sig": _signature(key, reference, by, expires)}
    )
    return f"{public_url}{ACK_PATH}?{query}"


def ack_link_valid(key: bytes, reference: str, by: str, expires: str, sig: str, now: int) -> bool:
    if not expires.isdigit() or int(expires) < now:
        return False
    return hmac.compare_digest(_signature(key, reference, by, int(expires)), sig)
