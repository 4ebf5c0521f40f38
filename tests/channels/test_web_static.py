"""Who may frame what: the chat frame (chat.html) names the origins that may show it, every
other page refuses to be framed, and our own page may show the chat frame."""

from __future__ import annotations

from typing import Any

from bot.channels.web.static import PAGE_CSP, frame_csp
from tests.conftest import Api

PARTNER = "https://partner.example.org"


def directives(policy: str) -> dict[str, str]:
    parts = (d.strip().split(None, 1) for d in policy.split(";") if d.strip())
    return {p[0]: (p[1] if len(p) > 1 else "") for p in parts}


def test_frame_policy_lists_only_plain_origins() -> None:
    policy = frame_csp(
        [
            PARTNER + "/",
            "HTTP://LOCALHOST:8080",
            "http://[::1]:9000",
            "https://evil.example; script-src *",
            "https://*.example.org",
            "javascript:alert(1)",
            PARTNER,
        ]
    )
    assert directives(policy)["frame-ancestors"] == (
        f"'self' {PARTNER} http://localhost:8080 http://[::1]:9000"
    )
    assert directives(policy)["script-src"] == "'self'"
    assert "unsafe-inline" not in policy
    assert directives(frame_csp([]))["frame-ancestors"] == "'self'"


async def test_the_chat_frame_may_be_framed_by_allowed_origins_only(
    start_server: Any, client: Any
) -> None:
    server = await start_server(allowed_origins=(PARTNER,))
    api = Api(client, server.base_url)
    frame = await api.request("GET", "/chat.html")
    assert frame.status == 200
    policy = directives(frame.headers["Content-Security-Policy"])
    assert policy["frame-ancestors"] == f"'self' {PARTNER}"
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert "X-Frame-Options" not in frame.headers
    assert '<script src="chat.js"' in frame.body

    again = await api.request("GET", "/chat.html", headers={"If-None-Match": frame.headers["ETag"]})
    assert again.status == 304
    assert "frame-ancestors 'self' " + PARTNER in again.headers["Content-Security-Policy"]


async def test_our_page_shows_the_chat_frame_and_is_never_framed(api: Api) -> None:
    page = await api.request("GET", "/")
    assert page.headers["Content-Security-Policy"] == PAGE_CSP
    policy = directives(PAGE_CSP)
    assert policy["frame-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert page.headers["X-Frame-Options"] == "DENY"
    for name in ("/chat.js", "/chat.css", "/widget.js", "/widget.css"):
        asset = await api.request("GET", name)
        assert asset.status == 200, name
