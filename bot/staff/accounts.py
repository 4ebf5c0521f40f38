"""Creating, resetting and disabling staff accounts: one place for the CLI and the admin page.

Each function changes the account and writes its audit row in the caller's transaction.
A new or reset account gets a one-time enrolment link: whoever opens it chooses a password and
enrols the second factor, so no password is ever chosen for someone, printed or sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from bot.staff.config import StaffSettings
from bot.staff.security import new_token, token_hash
from storage.staff import ROLES, StaffAccount, StaffTx

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")


class AccountError(ValueError):
    """Something about the request is wrong; the message says what, for a person to read."""


@dataclass(frozen=True, slots=True)
class EnrolmentLink:
    username: str
    url: str
    expires_in_hours: int


def enrolment_url(settings: StaffSettings, token: str) -> str:
    return f"{settings.public_url}/staff/enrol/{token}"


async def add_account(
    tx: StaffTx,
    settings: StaffSettings,
    *,
    username: str,
    display_name: str,
    role: str,
    by: StaffAccount | None,
    ip: str | None = None,
) -> EnrolmentLink:
    username = username.strip().lower()
    display_name = " ".join(display_name.split())
    if not USERNAME.match(username):
        raise AccountError(
            "Enter a username of 2 to 63 lowercase letters, digits, dots, dashes or underscores"
        )
    if not display_name or len(display_name) > 128:
        raise AccountError("Enter the person's name (up to 128 characters)")
    if role not in ROLES:
        raise AccountError(f"Choose a role: {', '.join(ROLES)}")
    if await tx.account_by_username(username) is not None:
        raise AccountError(f"There is already an account called {username}")
    token = new_token()
    account_id = await tx.add_account(
        username=username,
        display_name=display_name,
        role=role,
        enrolment_token_hash=token_hash(token),
        enrolment_expires_at=tx.now() + timedelta(hours=settings.enrolment_hours),
    )
    await tx.audit(
        "account.add",
        account=by,
        username=None if by else "(command line)",
        target=f"account:{account_id}",
        detail={"username": username, "role": role},
        ip=ip,
    )
    return EnrolmentLink(username, enrolment_url(settings, token), settings.enrolment_hours)


async def reset_account(
    tx: StaffTx,
    settings: StaffSettings,
    *,
    username: str,
    by: StaffAccount | None,
    ip: str | None = None,
) -> EnrolmentLink:
    account = await _existing(tx, username)
    token = new_token()
    await tx.reset_account(
        account.id,
        enrolment_token_hash=token_hash(token),
        enrolment_expires_at=tx.now() + timedelta(hours=settings.enrolment_hours),
    )
    await tx.audit(
        "account.reset",
        account=by,
        username=None if by else "(command line)",
        target=f"account:{account.id}",
        detail={"username": account.username},
        ip=ip,
    )
    return EnrolmentLink(account.username, enrolment_url(settings, token), settings.enrolment_hours)


async def disable_account(
    tx: StaffTx, *, username: str, by: StaffAccount | None, ip: str | None = None
) -> StaffAccount:
    account = await _existing(tx, username)
    await tx.disable_account(account.id)
    await tx.audit(
        "account.disable",
        account=by,
        username=None if by else "(command line)",
        target=f"account:{account.id}",
        detail={"username": account.username},
        ip=ip,
    )
    return account


async def _existing(tx: StaffTx, username: str) -> StaffAccount:
    account = await tx.account_by_username(username.strip().lower())
    if account is None:
        raise AccountError(f"There is no account called {username}")
    return account
