"""First run, sign-in (password and TOTP in one form), sign-out, and enrolment."""

from __future__ import annotations

import asyncio
import functools
import re
from datetime import timedelta

from aiohttp import web

from bot.staff.security import (
    hash_password,
    new_token,
    new_totp_secret,
    password_problem,
    qr_svg,
    token_hash,
    totp_step,
    totp_uri,
    verify_password,
)
from bot.staff.web import (
    EVERYONE,
    SIGN_IN_LIMITER,
    STAFF_SETTINGS,
    STAFF_STORE,
    Access,
    Route,
    clear_session_cookie,
    client_ip,
    local_path,
    maybe_principal,
    principal,
    render,
    set_session_cookie,
)

GENERIC_FAILURE = "The username, password or security code is not right"


async def index(request: web.Request) -> web.StreamResponse:
    """With no account yet: how to create the first one, and nothing else."""
    async with request.app[STAFF_STORE].transaction() as tx:
        accounts = await tx.count_accounts()
    if accounts == 0:
        return render(request, "first_run.html", {})
    if maybe_principal(request) is None:
        raise web.HTTPSeeOther("/staff/login")
    raise web.HTTPSeeOther("/staff/reports")


async def login_form(request: web.Request) -> web.StreamResponse:
    if maybe_principal(request) is not None:
        raise web.HTTPSeeOther("/staff/reports")
    return render(
        request,
        "login.html",
        {
            "next": local_path(request.query.get("next"), "/staff/reports"),
            "expired": request.query.get("expired") == "1",
            "enrolled": request.query.get("enrolled") == "1",
            "signed_out": request.query.get("signed_out") == "1",
            "error": None,
            "username": "",
            "oidc": request.app[STAFF_SETTINGS].oidc_enabled,
        },
    )


async def login(request: web.Request) -> web.StreamResponse:
    settings = request.app[STAFF_SETTINGS]
    store = request.app[STAFF_STORE]
    form = await request.post()
    username = str(form.get("username", "")).strip().lower()[:64]
    password = str(form.get("password", ""))[:256]
    code = str(form.get("code", ""))[:16]
    target = local_path(str(form.get("next", "")), "/staff/reports")
    ip = client_ip(request)

    def failed(message: str, status: int = 200) -> web.Response:
        return render(
            request,
            "login.html",
            {
                "next": target,
                "error": message,
                "username": username,
                "expired": False,
                "enrolled": False,
                "signed_out": False,
                "oidc": settings.oidc_enabled,
            },
            status=status,
        )

    if request.app[SIGN_IN_LIMITER].take(ip) > 0:
        async with store.transaction() as tx:
            await tx.audit("sign_in.throttled", account=None, username=username, ip=ip)
        return failed("Too many attempts from this computer. Wait a minute, then try again", 429)
    async with store.transaction() as tx:
        account = await tx.account_by_username(username)
    # Argon2 takes tens of milliseconds on purpose: outside the transaction, off the loop.
    password_ok = await asyncio.to_thread(
        verify_password, account.password_hash if account else None, password
    )
    async with store.transaction() as tx:
        now = tx.now()
        account = await tx.account_by_username(username)
        if account is None:
            await tx.audit(
                "sign_in.failed", account=None, username=username, detail={"why": "unknown"}, ip=ip
            )
            return failed(GENERIC_FAILURE)
        if account.locked_until is not None and account.locked_until > now:
            await tx.audit("sign_in.locked", account=account, ip=ip)
            return failed(
                "This account is locked after too many attempts. Try again later, or ask an administrator to reset it"
            )
        step = None
        if password_ok and account.totp_secret:
            step = totp_step(account.totp_secret, code, now=now, last_step=account.totp_last_step)
        if account.disabled_at is not None or not account.enrolled or step is None:
            failures = account.failed_attempts + 1
            locked_until = None
            if failures >= settings.max_failed_sign_ins:
                locked_until = now + timedelta(minutes=settings.lockout_minutes)
                failures = 0
            await tx.record_failed_sign_in(
                account.id, failed_attempts=failures, locked_until=locked_until
            )
            why = (
                "disabled"
                if account.disabled_at is not None
                else "not_enrolled"
                if not account.enrolled
                else "password"
                if not password_ok
                else "code"
            )
            await tx.audit(
                "sign_in.failed",
                account=account,
                detail={"why": why, "locked": locked_until is not None},
                ip=ip,
            )
            return failed(GENERIC_FAILURE)
        await tx.record_sign_in(account.id, totp_step=step)
        # Housekeeping: sessions idle past the limit are dead anyway; drop their rows.
        await tx.end_idle_sessions(now - timedelta(minutes=settings.idle_minutes))
        old = request.cookies.get("intake_staff_session")
        if old:
            await tx.end_session(token_hash(old))
        token = new_token()
        await tx.create_session(
            token_hash=token_hash(token), account_id=account.id, csrf_token=new_token(), ip=ip
        )
        await tx.audit("sign_in", account=account, ip=ip)
    response = web.HTTPSeeOther(target)
    set_session_cookie(response, token, settings)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    who = principal(request)
    async with request.app[STAFF_STORE].transaction() as tx:
        await tx.end_session(who.session.token_hash)
        await tx.audit("sign_out", account=who.account, ip=client_ip(request))
    response = web.HTTPSeeOther("/staff/login?signed_out=1")
    clear_session_cookie(response)
    raise response


async def _enrolling(request: web.Request, token: str) -> tuple[int, str] | None:
    async with request.app[STAFF_STORE].transaction() as tx:
        account = await tx.account_by_enrolment(token_hash(token))
        now = tx.now()
    if (
        account is None
        or account.disabled_at is not None
        or account.enrolment_expires_at is None
        or account.enrolment_expires_at < now
    ):
        return None
    return account.id, account.username


async def enrol_form(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    found = await _enrolling(request, token)
    if found is None:
        return render(request, "enrol_invalid.html", {}, status=404)
    secret = new_totp_secret()
    return _enrol_page(request, token, found[1], secret, errors={})


def _enrol_page(
    request: web.Request, token: str, username: str, secret: str, *, errors: dict[str, str]
) -> web.Response:
    return render(
        request,
        "enrol.html",
        {
            "token": token,
            "username": username,
            "secret": secret,
            "secret_grouped": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
            "qr": qr_svg(totp_uri(secret, username)),
            "errors": errors,
        },
        status=400 if errors else 200,
    )


async def enrol(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    ip = client_ip(request)
    if request.app[SIGN_IN_LIMITER].take(ip) > 0:
        return render(request, "enrol_invalid.html", {"throttled": True}, status=429)
    found = await _enrolling(request, token)
    if found is None:
        return render(request, "enrol_invalid.html", {}, status=404)
    account_id, username = found
    form = await request.post()
    secret = str(form.get("secret", ""))[:64]
    password = str(form.get("password", ""))[:300]
    confirm = str(form.get("confirm", ""))[:300]
    code = str(form.get("code", ""))[:16]
    errors: dict[str, str] = {}
    problem = password_problem(password, username)
    if problem:
        errors["password"] = problem
    elif password != confirm:
        errors["confirm"] = "The two passwords are not the same"
    if len(secret) != 32:
        errors["code"] = "Reload the page and scan the new code"
        secret = new_totp_secret()
    store = request.app[STAFF_STORE]
    async with store.transaction() as tx:
        step = totp_step(secret, code, now=tx.now(), last_step=None) if not errors else None
    if step is None and "code" not in errors:
        errors["code"] = "Enter the 6-digit code your authenticator app shows now"
    if errors or step is None:
        return _enrol_page(request, token, username, secret, errors=errors)
    password_hash = await asyncio.to_thread(hash_password, password)
    async with store.transaction() as tx:
        account = await tx.account_by_enrolment(token_hash(token))
        if account is None or account.id != account_id:
            return render(request, "enrol_invalid.html", {}, status=404)
        await tx.complete_enrolment(
            account.id, password_hash=password_hash, totp_secret=secret, totp_step=step
        )
        await tx.audit("account.enrol", account=account, ip=ip)
    raise web.HTTPSeeOther("/staff/login?enrolled=1")


#: The GDS Transport typeface is licensed for GOV.UK services only; without its @font-face the
#: pages fall back to Arial, as the Design System advises for services elsewhere.
_FONT_FACE = re.compile(rb"@font-face\{[^}]*\}")


@functools.cache
def _stylesheet(path: str) -> bytes:
    with open(path, "rb") as source:
        css = _FONT_FACE.sub(b"", source.read())
    # The compiled CSS points at /assets/; ours are under /staff/assets/.
    return css.replace(b"url(/assets/", b"url(/staff/assets/")


async def govuk_stylesheet(request: web.Request) -> web.StreamResponse:
    path = request.app[STAFF_SETTINGS].assets_dir / "govuk-frontend.min.css"
    try:
        body = await asyncio.to_thread(_stylesheet, str(path))
    except OSError:
        raise web.HTTPNotFound(
            text="GOV.UK Frontend is not installed: run make staff-assets"
        ) from None
    return web.Response(
        body=body, content_type="text/css", headers={"Cache-Control": "public, max-age=3600"}
    )


PUBLIC = Access(None)
ROUTES = [
    Route("GET", "/", index, PUBLIC, "index"),
    Route("GET", "/login", login_form, PUBLIC, "login_form"),
    Route("POST", "/login", login, PUBLIC, "login"),
    Route("GET", "/enrol/{token}", enrol_form, PUBLIC, "enrol_form"),
    Route("POST", "/enrol/{token}", enrol, PUBLIC, "enrol"),
    Route("POST", "/logout", logout, Access(EVERYONE), "logout"),
]
