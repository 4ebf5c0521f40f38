"""The page and the widget's files from `bot/static`, with strict security headers.

Files are looked up per request (so a newly built widget.js is served without a restart)
but only by a plain file name with a known extension: no directories, no traversal, no
content type guessed from the file system.

`chat.html` is the chat itself, shown in a frame on the pages that embed widget.js: it may be
framed by our own origin and by the origins in INTAKE_ALLOWED_ORIGINS, and by nobody else
(CSP `frame-ancestors`). Every other page refuses to be framed at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import hdrs, web

from bot.appkeys import SETTINGS

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"

#: Our pages run only our own script and style; the API is same-origin from there, and the
#: one frame they show is the chat, from our own origin.
_PAGE_SOURCES = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'"
)
PAGE_CSP = f"{_PAGE_SOURCES}; frame-src 'self'; frame-ancestors 'none'"
#: The chat frame's page (see `frame_csp`).
FRAME_PAGE = "chat.html"
#: An origin as a CSP source: scheme, host, optional port; nothing that could end a directive.
_CSP_ORIGIN = re.compile(r"https?://(?:[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")
#: JSON and assets are never documents: nothing may run or frame them.
NON_DOCUMENT_CSP = "default-src 'none'; frame-ancestors 'none'"

CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
    ".map": "application/json; charset=utf-8",
}

#: A plain file name with an extension we serve: the route itself refuses anything else.
FILE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.(?:html|m?js|css|svg|png|ico|woff2|txt|map)"

#: Assets are not content-hashed (sites embed a fixed /widget.js URL), so they are cached
#: briefly and then revalidated with the ETag; the page itself is always revalidated.
ASSET_CACHE = "public, max-age=300, must-revalidate"
PAGE_CACHE = "no-cache"


@dataclass(frozen=True, slots=True)
class _Loaded:
    body: bytes
    etag: str
    stamp: tuple[int, int]


def frame_csp(allowed_origins: Iterable[str]) -> str:
    """The chat frame's policy: like every page, plus who may frame it. An entry that is not
    a plain origin is left out (it could otherwise widen or break the policy)."""
    sources = ["'self'"]
    for origin in allowed_origins:
        normalized = origin.strip().rstrip("/").lower()
        if _CSP_ORIGIN.fullmatch(normalized) and normalized not in sources:
            sources.append(normalized)
    return f"{_PAGE_SOURCES}; frame-ancestors {' '.join(sources)}"


class StaticFiles:
    def __init__(self, directory: Path = STATIC_DIR) -> None:
        self._directory = directory.resolve()
        self._cache: dict[str, _Loaded] = {}

    async def index(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "index.html")

    async def file(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, request.match_info["name"])

    async def _serve(self, request: web.Request, name: str) -> web.StreamResponse:
        path = (self._directory / name).resolve()
        suffix = path.suffix.lower()
        if path.parent != self._directory or suffix not in CONTENT_TYPES:
            raise web.HTTPNotFound()
        loaded = await asyncio.to_thread(self._load, path)
        if loaded is None:
            raise web.HTTPNotFound()
        headers: dict[str, str] = {
            hdrs.CONTENT_TYPE: CONTENT_TYPES[suffix],
            hdrs.ETAG: loaded.etag,
            hdrs.CACHE_CONTROL: PAGE_CACHE if suffix == ".html" else ASSET_CACHE,
        }
        if suffix != ".html":
            # Pages on other sites embed the widget; let them even with COEP enabled.
            headers["Cross-Origin-Resource-Policy"] = "cross-origin"
        elif path.name == FRAME_PAGE:
            headers[hdrs.CONTENT_SECURITY_POLICY] = frame_csp(request.app[SETTINGS].allowed_origins)
        if loaded.etag in _etags(request.headers.get(hdrs.IF_NONE_MATCH, "")):
            return web.Response(status=304, headers=headers)
        return web.Response(body=loaded.body, headers=headers)

    def _load(self, path: Path) -> _Loaded | None:
        """Re-read a file only when its size or mtime changed."""
        try:
            stat = path.stat()
        except OSError:
            return None
        if not path.is_file():
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(path.name)
        if cached is not None and cached.stamp == stamp:
            return cached
        try:
            body = path.read_bytes()
        except OSError:
            return None
        loaded = _Loaded(body, f'"{hashlib.sha256(body).hexdigest()[:32]}"', stamp)
        self._cache[path.name] = loaded
        return loaded


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def is_html(response: web.StreamResponse) -> bool:
    return response.content_type == "text/html"


def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every response: no sniffing, no referrer. HTML gets the strict page policy unless it
    brings its own, and X-Frame-Options DENY unless its policy names who may frame it (the
    chat frame: X-Frame-Options cannot name origins, and would overrule nothing useful)."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if is_html(response):
        policy = response.headers.setdefault(hdrs.CONTENT_SECURITY_POLICY, PAGE_CSP)
        if not _allows_framing(policy):
            response.headers.setdefault("X-Frame-Options", "DENY")
    elif response.content_type not in ("text/javascript", "text/css"):
        response.headers.setdefault("Content-Security-Policy", NON_DOCUMENT_CSP)


def _allows_framing(policy: str) -> bool:
    directives = (d.strip().lower() for d in policy.split(";"))
    ancestors = next((d for d in directives if d.startswith("frame-ancestors")), None)
    return ancestors is not None and ancestors != "frame-ancestors 'none'"
