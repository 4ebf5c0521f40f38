"""What every test of links checks: a well-formed https address, and the regulators named for
care outside England (the same on every channel)."""

from __future__ import annotations

from urllib.parse import urlsplit

from bot.config import DEFAULT_LINKS


def assert_well_formed_https(url: str) -> None:
    parts = urlsplit(url)
    assert parts.scheme == "https", url
    assert parts.hostname and "." in parts.hostname, url
    assert parts.username is None and parts.password is None, url
    assert not any(c.isspace() for c in url), url
    assert parts.port is None, url


#: The links the `outside_england` step shows, by label, with the default configuration.
OUTSIDE_ENGLAND_LINKS = {
    "Care Inspectorate Wales": DEFAULT_LINKS["wales_care"],
    "Healthcare Inspectorate Wales": DEFAULT_LINKS["wales_health"],
    "Care Inspectorate (Scotland)": DEFAULT_LINKS["scotland_care"],
    "Healthcare Improvement Scotland": DEFAULT_LINKS["scotland_health"],
    "RQIA (Northern Ireland)": DEFAULT_LINKS["northern_ireland"],
}
