"""Who may call the API, and how often: CORS by exact origin; which client a request is from.

The limits themselves (see `bot.channels.web.setup`) are token buckets in the process
(`bot.ratelimit`): with several workers every limit is per worker, which is enough to blunt
a looping client or a flood and needs no shared state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from aiohttp import hdrs, web

from bot.channels.web.http import CORS_ORIGIN, ApiError
from bot.ratelimit import TokenBuckets

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

#: IPv6 clients are limited per /64: one household or phone gets a whole /64, so rotating
#: addresses within it is free and would otherwise escape any per-address limit.
IPV6_CLIENT_PREFIX = 64


def network_key(address: str) -> str:
    """The key a client address is limited by: an IPv4 address, or an IPv6 /64."""
    try:
        ip = ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ip_network(f"{ip}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(ip)


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


def enforce(
    limiter: TokenBuckets,
    key: str,
    message: str = "Too many messages in a short time. Please wait a moment and try again.",
) -> None:
    """429 with Retry-After when `key` has no token left."""
    wait = limiter.take(key)
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            message,
            headers={hdrs.RETRY_AFTER: str(max(1, math.ceil(wait)))},
        )
