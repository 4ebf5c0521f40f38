"""Passwords (Argon2id), random tokens, and the TOTP second factor with its QR code.

argon2-cffi's PasswordHasher defaults to Argon2id with RFC 9106's low-memory profile; its
hashes carry their parameters, so `needs_rehash` can upgrade them later. pyotp implements
RFC 6238; a code is accepted for the current 30-second step or one either side (clock drift),
and never for a step at or before the last one used (no replay). segno draws the QR code:
pure Python, no imaging library, SVG out, maintained, and it follows ISO/IEC 18004.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
#: Verified against when the username is unknown, so the answer takes as long either way.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))
MIN_PASSWORD_LENGTH = 12
ISSUER = "Care intake staff"


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def password_problem(password: str, username: str) -> str | None:
    """Length over composition rules (NCSC and NIST SP 800-63B advice)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Enter a password of at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > 256:
        return "Enter a password of 256 characters or fewer"
    if username.lower() in password.lower():
        return "Your password must not contain your username"
    return None


def new_token() -> str:
    """256 bits from the OS's CSPRNG, URL-safe."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the database keeps of a session or enrolment token: a leaked table opens nothing."""
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_totp_secret() -> str:
    return pyotp.random_base32(32)


def totp_step(secret: str, code: str, *, now: datetime, last_step: int | None) -> int | None:
    """The time step `code` belongs to (now, or one either side), if not used before."""
    code = "".join(code.split())
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in (current - 1, current, current + 1):
        if last_step is not None and step <= last_step:
            continue
        if same(totp.generate_otp(step), code):
            return step
    return None


def totp_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def qr_svg(data: str) -> str:
    """An inline SVG (no script, no external reference): allowed by our strict CSP."""
    return str(
        segno.make(data, error="m").svg_inline(
            scale=5, border=4, title="QR code for your authenticator app"
        )
    )
