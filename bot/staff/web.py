"""The staff application's skeleton, shared by every view: the route table's types with
each route's access, the middlewares (security headers, allowed networks, session, roles,
CSRF) and rendering. `bot.staff.application` assembles the views and mounts them.

Every route is declared with who may use it (`Access`); the session middleware enforces it
before any handler runs, so a handler cannot forget. Nothing is reachable without a session
except the sign-in and enrolment forms, the first-run page and the stylesheet.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from aiohttp.web_urldispatcher import StaticResource

from bot.ratelimit import TokenBuckets
from bot.staff.config import StaffSettings
from bot.staff.security import new_token, same, token_hash
from storage.staff import StaffAccount, StaffSession, StaffStore

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STAFF_STORE = web.AppKey("staff_store", StaffStore)
STAFF_SETTINGS = web.AppKey("staff_settings", StaffSettings)
#: On the parent application: the mounted staff sub-application (tests reach its store).
STAFF_APP = web.AppKey("staff_app", web.Application)

SESSION_COOKIE = "intake_staff_session"
#: Double-submit token for the forms used before signing in (sign-in, enrolment).
FORM_COOKIE = "intake_staff_form"
COOKIE_PATH = "/staff/"
TEMPLATES = Path(__file__).resolve().parent / "templates"

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}

EVERYONE = frozenset({"officer", "lead", "admin"})
LEADS = frozenset({"lead", "admin"})
ADMINS = frozenset({"admin"})


@dataclass(frozen=True, slots=True)
class Access:
    """None: public (no session needed). Otherwise the roles that may use the route."""

    roles: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    access: Access
    name: str


@dataclass(frozen=True, slots=True)
class Principal:
    account: StaffAccount
    session: StaffSession

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token


PRINCIPAL = web.RequestKey("staff_principal", Principal)
#: The double-submit token the page's forms carry, and a new one to set as a cookie.
FORM_TOKEN = web.RequestKey("staff_form_token", str)
NEW_FORM_TOKEN = web.RequestKey("staff_new_form_token", str)


#: Sign-in and set-up attempts per client address, in this worker (the lockout is in the
#: database and holds across workers).
SIGN_IN_LIMITER = web.AppKey("staff_sign_in_limiter", TokenBuckets)


def client_ip(request: web.Request) -> str:
    return request.remote or "unknown"


def principal(request: web.Request) -> Principal:
    found = request.get(PRINCIPAL)
    if not isinstance(found, Principal):
        raise web.HTTPForbidden()
    return found


def maybe_principal(request: web.Request) -> Principal | None:
    found = request.get(PRINCIPAL)
    return found if isinstance(found, Principal) else None


def render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    who = maybe_principal(request)
    context = {
        "me": who.account if who else None,
        "csrf_token": who.csrf_token if who else request.get(FORM_TOKEN, ""),
        **context,
    }
    return aiohttp_jinja2.render_template(template, request, context, status=status)


def local_path(target: str | None, default: str = "/staff/") -> str:
    """Only our own pages are redirect targets (no open redirect)."""
    if target and target.startswith("/staff/") and not target.startswith("//"):
        return target
    return default


# ---------------------------------------------------------------------- middlewares


def _error_text(error: web.HTTPException) -> str:
    text = error.text or ""
    return "" if text.startswith(f"{error.status}:") else text


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as error:
        if error.status >= 400:
            # An HTML page in our own look (the parent app would answer JSON).
            response = aiohttp_jinja2.render_template(
                "error.html",
                request,
                {"status": error.status, "reason": error.reason, "text": _error_text(error)},
                status=error.status,
            )
        else:
            error.headers.update(SECURITY_HEADERS)
            error.headers.setdefault("Cache-Control", "no-store")
            raise
    response.headers.update(SECURITY_HEADERS)
    if not isinstance(request.match_info.route.resource, StaticResource):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@web.middleware
async def allowed_networks(request: web.Request, handler: Handler) -> web.StreamResponse:
    networks = request.app[STAFF_SETTINGS].allowed_networks
    if networks:
        try:
            address = ip_address(client_ip(request))
        except ValueError:
            raise web.HTTPNotFound() from None
        if not any(address in network for network in networks):
            raise web.HTTPNotFound()
    return await handler(request)


def _access(request: web.Request) -> Access | None:
    route = request.match_info.route
    if isinstance(route.resource, StaticResource):
        return Access(None)
    found: Access | None = getattr(route.handler, "staff_access", None)
    return found


@web.middleware
async def sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Load the session (ending it if idle or its account is disabled), then enforce the
    route's access and, for every form post, its CSRF token."""
    access = _access(request)
    if access is None:  # no such route: 404/405 from the router
        return await handler(request)
    settings = request.app[STAFF_SETTINGS]
    store = request.app[STAFF_STORE]
    token = request.cookies.get(SESSION_COOKIE)
    ended = False
    if token:
        async with store.transaction() as tx:
            found = await tx.session(token_hash(token))
            if found is not None:
                session, account = found
                idle = tx.now() - session.last_seen_at > timedelta(minutes=settings.idle_minutes)
                if idle or account.disabled_at is not None:
                    await tx.end_session(session.token_hash)
                    await tx.audit(
                        "session.expired" if idle else "session.ended_disabled",
                        account=account,
                        ip=client_ip(request),
                    )
                    ended = True
                else:
                    await tx.touch_session(session.token_hash)
                    request[PRINCIPAL] = Principal(account, session)
    who = maybe_principal(request)
    if access.roles is None:
        if request.method == "POST":
            await _check_form_token(request)
        _ensure_form_token(request)
        response = await handler(request)
        if NEW_FORM_TOKEN in request:
            _set_cookie(response, FORM_COOKIE, request[NEW_FORM_TOKEN], settings)
        return response
    if who is None:
        if request.method == "GET" and request.headers.get("Sec-Fetch-Site") == "cross-site":
            # A link from elsewhere (an email, another site): the browser withheld our
            # SameSite=Strict cookie. Navigating again from our own page sends it, if any.
            return render(request, "continue.html", {"target": request.path_qs})
        if request.method in ("GET", "HEAD"):
            target = quote(request.path_qs, safe="/?=&")
            suffix = "&expired=1" if ended else ""
            raise web.HTTPSeeOther(f"/staff/login?next={target}{suffix}")
        raise web.HTTPForbidden(text="Sign in first.")
    if who.account.role not in access.roles:
        return render(request, "forbidden.html", {}, status=403)
    if request.method == "POST":
        form = await request.post()
        if not same(str(form.get("csrf_token", "")), who.csrf_token):
            return render(request, "csrf.html", {}, status=403)
    return await handler(request)


def _ensure_form_token(request: web.Request) -> None:
    token = request.cookies.get(FORM_COOKIE)
    if not token or len(token) < 32:
        token = new_token()
        request[NEW_FORM_TOKEN] = token
    request[FORM_TOKEN] = token


async def _check_form_token(request: web.Request) -> None:
    form = await request.post()
    cookie = request.cookies.get(FORM_COOKIE, "")
    if not cookie or not same(str(form.get("csrf_token", "")), cookie):
        raise web.HTTPForbidden(
            text="This form has expired. Go back, reload the page and try again."
        )


def _set_cookie(
    response: web.StreamResponse, name: str, value: str, settings: StaffSettings
) -> None:
    response.set_cookie(
        name,
        value,
        path=COOKIE_PATH,
        httponly=True,
        secure=settings.secure_cookies,
        samesite="Strict",
    )


def set_session_cookie(response: web.StreamResponse, token: str, settings: StaffSettings) -> None:
    _set_cookie(response, SESSION_COOKIE, token, settings)


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path=COOKIE_PATH)
