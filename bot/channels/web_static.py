"""The page and the widget's files from `bot/static`, with strict security headers.

Files are looked up per request (so a newly built widget.js is served without a restart)
but only by a plain file name with a known extension: no directories, no traversal, no
content type guessed from the file system.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import hdrs, web

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

#: The page embeds only our own script and style; the API is same-origin from there.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
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
    """Every response: no sniffing, no referrer. HTML gets the strict page policy."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if is_html(response):
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
    elif response.content_type not in ("text/javascript", "text/css"):
        response.headers.setdefault("Content-Security-Policy", NON_DOCUMENT_CSP)
