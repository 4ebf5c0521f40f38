"""The in-process rate limiter: refill, the wait it reports, bounded memory; client keys."""

from __future__ import annotations

from bot.channels.web.guard import network_key
from bot.ratelimit import TokenBuckets
from tests.fakes.clock import SteppedClock


def test_burst_then_refill() -> None:
    clock = SteppedClock(1000.0)
    limiter = TokenBuckets.per_minute(60, clock=clock)  # one a second, burst of 60
    assert all(limiter.take("a") == 0 for _ in range(60))
    wait = limiter.take("a")
    assert 0 < wait <= 1.0
    clock.now += 1.0
    assert limiter.take("a") == 0
    assert limiter.take("a") > 0


def test_keys_are_independent() -> None:
    limiter = TokenBuckets.per_minute(1, clock=SteppedClock(1000.0))
    assert limiter.take("a") == 0
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0


def test_memory_is_bounded() -> None:
    limiter = TokenBuckets.per_minute(10, max_keys=100, clock=SteppedClock(1000.0))
    for n in range(10_000):
        limiter.take(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter) == 100


def test_recently_used_buckets_survive_eviction() -> None:
    limiter = TokenBuckets.per_minute(1, max_keys=2, clock=SteppedClock(1000.0))
    limiter.take("busy")
    limiter.take("x")
    limiter.take("busy")  # refreshed: now the most recent
    limiter.take("y")  # evicts "x", not "busy"
    assert limiter.take("busy") > 0


def _request(peer: str, forwarded: str | None = None):  # type: ignore[no-untyped-def]
    from aiohttp.test_utils import make_mocked_request

    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    transport = type(
        "T",
        (),
        {
            "get_extra_info": lambda self, name, default=None: (
                (peer, 1234) if name == "peername" else default
            )
        },
    )()
    return make_mocked_request(
        "POST", "/api/v1/conversations", headers=headers, transport=transport
    )


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() -> None:
    from bot.channels.web.guard import client_address, parse_networks

    proxies = parse_networks(["10.0.0.0/8", "::1"])
    # A client cannot pick its own bucket by writing the header itself.
    assert client_address(_request("203.0.113.9", "198.51.100.1")) == "203.0.113.9"
    assert client_address(_request("203.0.113.9", "198.51.100.1"), proxies) == "203.0.113.9"
    # From our proxy: the nearest hop that is not ours, read from the right.
    assert (
        client_address(_request("10.1.2.3", "198.51.100.1, 203.0.113.7, 10.9.9.9"), proxies)
        == "203.0.113.7"
    )
    assert client_address(_request("10.1.2.3"), proxies) == "10.1.2.3"
    assert client_address(_request("10.1.2.3", "garbage"), proxies) == "garbage"


def test_ipv6_clients_are_keyed_by_their_64() -> None:
    assert network_key("2001:db8:1:2:aaaa::1") == network_key("2001:db8:1:2:ffff::9")
    assert network_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert network_key("2001:db8:1:3::1") != network_key("2001:db8:1:2::1")
    assert network_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert network_key("192.0.2.7") == "192.0.2.7"
    assert network_key("unknown") == "unknown"


async def test_the_pacer_waits_its_turn() -> None:
    from bot.ratelimit import Pacer

    pacer = Pacer(1000.0, burst=2)
    for _ in range(5):
        await pacer.acquire()
