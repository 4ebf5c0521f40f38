"""Who may call the API, and how often: CORS by exact origin, token buckets per client.

Both live in the process. With several workers the effective rate limit is per worker; that
is enough to blunt a looping client or a flood, and needs no shared state.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from aiohttp import hdrs, web

from bot.channels.web_http import CORS_ORIGIN, ApiError

PREFLIGHT_MAX_AGE_SECONDS = 600
ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Content-Type, Authorization"


# ---------------------------------------------------------------------- CORS


class OriginPolicy:
    """Exact-match allow list (scheme://host[:port]) plus the server's own origin.

    A request without an Origin header (curl, a same-origin GET) is not a cross-site browser
    request, so it is allowed; an Origin we do not know is refused outright with 403 rather
    than merely left without CORS headers, so a widget copied onto a foreign site fails loudly.
    """

    def __init__(self, allowed: Iterable[str]) -> None:
        self._allowed = frozenset(_normalize(o) for o in allowed if o)

    def is_allowed(self, request: web.Request, origin: str) -> bool:
        normalized = _normalize(origin)
        return normalized in self._allowed or self._is_same_origin(request, normalized)

    @staticmethod
    def _is_same_origin(request: web.Request, origin: str) -> bool:
        """Same origin as seen in the Host header. Behind a TLS-terminating proxy the server
        sees plain http while the browser says https, so https with our Host also counts."""
        host = request.host.lower()
        return origin in {f"{request.scheme}://{host}", f"https://{host}"}


def _normalize(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def cors_preflight(request: web.Request, origin: str) -> web.Response:
    """Answer an OPTIONS preflight for an allowed origin; no credentials (the token is a
    header, not a cookie)."""
    requested = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD, "").upper()
    if requested and requested not in ("GET", "POST"):
        raise ApiError(
            405,
            "method_not_allowed",
            "This method is not allowed here.",
            headers={hdrs.ALLOW: ALLOWED_METHODS},
        )
    request[CORS_ORIGIN] = origin
    return web.Response(
        status=204,
        headers={
            hdrs.ACCESS_CONTROL_ALLOW_METHODS: ALLOWED_METHODS,
            hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOWED_HEADERS,
            hdrs.ACCESS_CONTROL_MAX_AGE: str(PREFLIGHT_MAX_AGE_SECONDS),
        },
    )


# ---------------------------------------------------------------------- rate limiting


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by a string (a client address, a conversation id).

    `per_minute` requests refill evenly over a minute, with a burst of the same size. Memory
    is bounded: at most `max_keys` buckets, least recently used dropped first (a dropped
    bucket is simply full again, which errs on the side of letting people talk).
    """

    def __init__(
        self,
        per_minute: int,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = float(max(per_minute, 1))
        self._rate = self.capacity / 60.0
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> float:
        """Spend one token; returns 0 when allowed, else the seconds until one is free."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.capacity, now)
            self._buckets[key] = bucket
            self._evict()
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

    def _evict(self) -> None:
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)


def client_address(
    request: web.Request, trusted_proxies: Sequence[IPv4Network | IPv6Network] = ()
) -> str:
    """The address to rate-limit: the peer, unless the peer is one of our own reverse
    proxies, in which case the nearest X-Forwarded-For hop that is not one of them. Any
    client can write X-Forwarded-For, so it is read only from proxies we named, and from the
    right (the hops our proxies appended), never the left."""
    peer = request.remote or "unknown"
    if not trusted_proxies or not _is_trusted(peer, trusted_proxies):
        return peer
    hops = [
        h.strip() for h in ",".join(request.headers.getall(hdrs.X_FORWARDED_FOR, [])).split(",")
    ]
    for hop in reversed([h for h in hops if h]):
        if not _is_trusted(hop, trusted_proxies):
            return hop
    return peer


def parse_networks(specs: Iterable[str]) -> tuple[IPv4Network | IPv6Network, ...]:
    """`INTAKE_TRUSTED_PROXIES` entries: addresses or CIDR blocks."""
    return tuple(ip_network(spec.strip(), strict=False) for spec in specs if spec.strip())


def _is_trusted(address: str, networks: Sequence[IPv4Network | IPv6Network]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def enforce(limiter: RateLimiter, key: str) -> None:
    wait = limiter.take(key)
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            "Too many messages in a short time. Please wait a moment and try again.",
            headers={hdrs.RETRY_AFTER: str(max(1, math.ceil(wait)))},
        )
