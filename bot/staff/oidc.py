"""Single sign-on over OpenID Connect (authorization code flow with PKCE), optional.

authlib provides the protocol pieces (PKCE, random tokens, ID token claim validation);
joserfc (authlib's JOSE library) checks the token's signature against the provider's JWKS;
aiohttp is the HTTP client. The ID token's `preferred_username` (configurable) must be an
enabled staff account, created by an admin as usual: the provider proves who someone is, our
accounts say what they may do. The provider must have used two factors (`amr` has "mfa"),
unless INTAKE_STAFF_OIDC_REQUIRE_MFA=false.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from bot.staff.config import StaffSettings
from bot.staff.security import new_token, same, token_hash
from bot.staff.web import (
    STAFF_SETTINGS,
    STAFF_STORE,
    Access,
    Route,
    client_ip,
    render,
    set_session_cookie,
)

STATE_COOKIE = "intake_staff_oidc"
STATE_PATH = "/staff/oidc/"
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)


class SignOnError(Exception):
    """Why single sign-on did not sign the person in (for the audit log, not for display)."""


@dataclass(frozen=True, slots=True)
class Provider:
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


def redirect_uri(settings: StaffSettings) -> str:
    return f"{settings.public_url}/staff/oidc/callback"


async def discover(settings: StaffSettings) -> Provider:
    url = f"{settings.oidc_issuer}/.well-known/openid-configuration"
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
        async with http.get(url) as response:
            response.raise_for_status()
            document: dict[str, Any] = await response.json()
    if document.get("issuer", "").rstrip("/") != settings.oidc_issuer:
        raise SignOnError("the provider's discovery document names another issuer")
    return Provider(
        str(document["authorization_endpoint"]),
        str(document["token_endpoint"]),
        str(document["jwks_uri"]),
    )


async def start(request: web.Request) -> web.StreamResponse:
    settings = request.app[STAFF_SETTINGS]
    if not settings.oidc_enabled:
        raise web.HTTPNotFound()
    provider = await discover(settings)
    state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": settings.oidc_client_id,
            "redirect_uri": redirect_uri(settings),
            "scope": "openid profile email",
            "state": state,
            "nonce": nonce,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    response = web.HTTPSeeOther(f"{provider.authorization_endpoint}?{query}")
    # Lax, not Strict: the provider sends the browser back to us from its own site.
    response.set_cookie(
        STATE_COOKIE,
        f"{state}.{nonce}.{verifier}",
        path=STATE_PATH,
        max_age=600,
        httponly=True,
        secure=settings.secure_cookies,
        samesite="Lax",
    )
    raise response


async def _id_token_claims(
    settings: StaffSettings, provider: Provider, code: str, verifier: str, nonce: str
) -> dict[str, Any]:
    # client_secret_basic: each part form-encoded first (RFC 6749, section 2.3.1).
    pair = f"{quote(settings.oidc_client_id or '', safe='')}:{quote(settings.oidc_client_secret or '', safe='')}"
    auth = {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri(settings),
        "code_verifier": verifier,
    }
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
        async with http.post(provider.token_endpoint, data=form, headers=auth) as response:
            if response.status != 200:
                raise SignOnError(f"the token endpoint answered {response.status}")
            tokens: dict[str, Any] = await response.json()
        async with http.get(provider.jwks_uri) as response:
            response.raise_for_status()
            jwks: dict[str, Any] = await response.json()
    try:
        token = jwt.decode(
            str(tokens["id_token"]),
            KeySet.import_key_set(jwks),  # type: ignore[arg-type]
            algorithms=["RS256", "ES256"],
        )
        claims = CodeIDToken(
            token.claims,
            token.header,
            options={
                "iss": {"essential": True, "value": settings.oidc_issuer},
                "aud": {"essential": True, "value": settings.oidc_client_id},
            },
            params={"nonce": nonce, "client_id": settings.oidc_client_id},
        )
        claims.validate(now=int(time.time()), leeway=60)
    except (KeyError, ValueError, JoseError) as error:
        raise SignOnError(f"the ID token is not valid: {type(error).__name__}") from error
    if "nonce" not in token.claims:
        raise SignOnError("the ID token has no nonce")
    if settings.oidc_require_mfa and "mfa" not in (token.claims.get("amr") or []):
        raise SignOnError("the provider did not use two factors (no 'mfa' in amr)")
    return dict(token.claims)


async def callback(request: web.Request) -> web.StreamResponse:
    settings = request.app[STAFF_SETTINGS]
    if not settings.oidc_enabled:
        raise web.HTTPNotFound()
    store = request.app[STAFF_STORE]
    ip = client_ip(request)
    username: str | None = None
    try:
        state, _, rest = request.cookies.get(STATE_COOKIE, "").partition(".")
        nonce, _, verifier = rest.partition(".")
        if not (state and nonce and verifier) or not same(request.query.get("state", ""), state):
            raise SignOnError("the state does not match this browser's")
        if "code" not in request.query:
            raise SignOnError(f"the provider refused: {request.query.get('error', 'no code')[:64]}")
        provider = await discover(settings)
        claims = await _id_token_claims(settings, provider, request.query["code"], verifier, nonce)
        username = str(claims.get(settings.oidc_username_claim, "")).strip().lower()[:64]
        async with store.transaction() as tx:
            account = await tx.account_by_username(username)
            if account is None or account.disabled_at is not None:
                raise SignOnError("no enabled staff account has that username")
            token = new_token()
            await tx.create_session(
                token_hash=token_hash(token), account_id=account.id, csrf_token=new_token(), ip=ip
            )
            await tx.audit(
                "sign_in.oidc", account=account, detail={"sub": str(claims.get("sub"))}, ip=ip
            )
    except (SignOnError, aiohttp.ClientError) as error:
        async with store.transaction() as tx:
            await tx.audit(
                "sign_in.failed",
                account=None,
                username=username,
                detail={"why": "oidc", "reason": str(error)[:200]},
                ip=ip,
            )
        failed = render(
            request,
            "login.html",
            {
                "next": "/staff/reports",
                "error": "Single sign-on did not work. Ask an administrator if this goes on",
                "username": "",
                "expired": False,
                "enrolled": False,
                "signed_out": False,
                "oidc": settings.oidc_enabled,
            },
            status=403,
        )
        failed.del_cookie(STATE_COOKIE, path=STATE_PATH)
        return failed
    # A page of ours, not a redirect: the browser arrived here from the provider's site, and a
    # redirect would still count as that cross-site navigation, which never carries our
    # SameSite=Strict session cookie. A navigation from this page does.
    response = render(request, "signed_in.html", {})
    response.del_cookie(STATE_COOKIE, path=STATE_PATH)
    set_session_cookie(response, token, settings)
    return response


PUBLIC = Access(None)
ROUTES = [
    Route("GET", "/oidc/start", start, PUBLIC, "oidc_start"),
    Route("GET", "/oidc/callback", callback, PUBLIC, "oidc_callback"),
]
