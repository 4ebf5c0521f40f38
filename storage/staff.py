"""Storage for the staff web application: accounts, server-side sessions, the audit log.

`StaffStore.transaction()` is one unit of work. Every staff action writes its audit row through
the same `StaffTx`, so the action and its record commit together or not at all. The queue,
cases and retention live in `storage.staff_reports`, reachable from the same transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import Clock, Db, in_line_for_a_connection, utc_now
from storage.errors import storage_errors
from storage.models import staff_accounts, staff_audit, staff_sessions
from storage.staff_reports import StaffReports

ROLES = ("officer", "lead", "admin")


@dataclass(frozen=True, slots=True)
class StaffAccount:
    id: int
    username: str
    display_name: str
    role: str
    password_hash: str | None
    totp_secret: str | None
    totp_last_step: int | None
    enrolment_expires_at: datetime | None
    failed_attempts: int
    locked_until: datetime | None
    disabled_at: datetime | None
    created_at: datetime

    @property
    def enrolled(self) -> bool:
        return self.password_hash is not None and self.totp_secret is not None


@dataclass(frozen=True, slots=True)
class StaffSession:
    token_hash: str
    account_id: int
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    ip: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    account_id: int | None
    username: str | None
    action: str
    target: str | None
    detail: dict[str, Any]
    ip: str | None


def _account(row: Any) -> StaffAccount:
    return StaffAccount(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        role=row.role,
        password_hash=row.password_hash,
        totp_secret=row.totp_secret,
        totp_last_step=row.totp_last_step,
        enrolment_expires_at=row.enrolment_expires_at,
        failed_attempts=row.failed_attempts,
        locked_until=row.locked_until,
        disabled_at=row.disabled_at,
        created_at=row.created_at,
    )


def _audit(row: Any) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        account_id=row.account_id,
        username=row.username,
        action=row.action,
        target=row.target,
        detail=dict(row.detail or {}),
        ip=row.ip,
    )


class StaffTx:
    """One transaction's view of the staff tables (and, through `reports`, of the queue)."""

    def __init__(self, db: Db) -> None:
        self.db = db
        self.reports = StaffReports(db)

    def now(self) -> datetime:
        return self.db.now()

    # ------------------------------------------------------------------ accounts

    async def count_accounts(self) -> int:
        result = await self.db.execute(select(func.count()).select_from(staff_accounts))
        return int(result.scalar_one())

    async def add_account(
        self,
        *,
        username: str,
        display_name: str,
        role: str,
        enrolment_token_hash: str,
        enrolment_expires_at: datetime,
    ) -> int:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        result = await self.db.execute(
            insert(staff_accounts)
            .values(
                username=username,
                display_name=display_name,
                role=role,
                enrolment_token_hash=enrolment_token_hash,
                enrolment_expires_at=enrolment_expires_at,
                failed_attempts=0,
                created_at=self.now(),
            )
            .returning(staff_accounts.c.id)
        )
        return int(result.scalar_one())

    async def account(self, account_id: int) -> StaffAccount | None:
        row = (
            await self.db.execute(select(staff_accounts).where(staff_accounts.c.id == account_id))
        ).first()
        return None if row is None else _account(row)

    async def account_by_username(self, username: str) -> StaffAccount | None:
        row = (
            await self.db.execute(
                select(staff_accounts).where(staff_accounts.c.username == username)
            )
        ).first()
        return None if row is None else _account(row)

    async def account_by_enrolment(self, token_hash: str) -> StaffAccount | None:
        row = (
            await self.db.execute(
                select(staff_accounts).where(staff_accounts.c.enrolment_token_hash == token_hash)
            )
        ).first()
        return None if row is None else _account(row)

    async def accounts(self) -> list[StaffAccount]:
        rows = await self.db.execute(select(staff_accounts).order_by(staff_accounts.c.username))
        return [_account(row) for row in rows]

    async def reset_account(
        self, account_id: int, *, enrolment_token_hash: str, enrolment_expires_at: datetime
    ) -> None:
        """Forget the password and the second factor, end every session, issue a new link."""
        await self.db.execute(
            update(staff_accounts)
            .where(staff_accounts.c.id == account_id)
            .values(
                password_hash=None,
                totp_secret=None,
                totp_last_step=None,
                enrolment_token_hash=enrolment_token_hash,
                enrolment_expires_at=enrolment_expires_at,
                failed_attempts=0,
                locked_until=None,
                disabled_at=None,
            )
        )
        await self.end_sessions_of(account_id)

    async def complete_enrolment(
        self, account_id: int, *, password_hash: str, totp_secret: str, totp_step: int
    ) -> None:
        await self.db.execute(
            update(staff_accounts)
            .where(staff_accounts.c.id == account_id)
            .values(
                password_hash=password_hash,
                totp_secret=totp_secret,
                totp_last_step=totp_step,
                enrolment_token_hash=None,
                enrolment_expires_at=None,
                failed_attempts=0,
                locked_until=None,
            )
        )

    async def disable_account(self, account_id: int) -> None:
        """Disabled at once: every session of the account is deleted in the same transaction."""
        await self.db.execute(
            update(staff_accounts)
            .where(staff_accounts.c.id == account_id)
            .values(disabled_at=self.now(), enrolment_token_hash=None)
        )
        await self.end_sessions_of(account_id)

    async def record_failed_sign_in(
        self, account_id: int, *, failed_attempts: int, locked_until: datetime | None
    ) -> None:
        await self.db.execute(
            update(staff_accounts)
            .where(staff_accounts.c.id == account_id)
            .values(failed_attempts=failed_attempts, locked_until=locked_until)
        )

    async def record_sign_in(self, account_id: int, *, totp_step: int) -> None:
        await self.db.execute(
            update(staff_accounts)
            .where(staff_accounts.c.id == account_id)
            .values(failed_attempts=0, locked_until=None, totp_last_step=totp_step)
        )

    # ------------------------------------------------------------------ sessions

    async def create_session(
        self, *, token_hash: str, account_id: int, csrf_token: str, ip: str
    ) -> None:
        now = self.now()
        await self.db.execute(
            insert(staff_sessions).values(
                token_hash=token_hash,
                account_id=account_id,
                csrf_token=csrf_token,
                created_at=now,
                last_seen_at=now,
                ip=ip,
            )
        )

    async def session(self, token_hash: str) -> tuple[StaffSession, StaffAccount] | None:
        statement = (
            select(
                staff_sessions.c.token_hash,
                staff_sessions.c.csrf_token,
                staff_sessions.c.created_at.label("session_created_at"),
                staff_sessions.c.last_seen_at,
                staff_sessions.c.ip.label("session_ip"),
                staff_accounts,
            )
            .join(staff_accounts, staff_accounts.c.id == staff_sessions.c.account_id)
            .where(staff_sessions.c.token_hash == token_hash)
        )
        row = (await self.db.execute(statement)).first()
        if row is None:
            return None
        session = StaffSession(
            token_hash=row.token_hash,
            account_id=row.id,
            csrf_token=row.csrf_token,
            created_at=row.session_created_at,
            last_seen_at=row.last_seen_at,
            ip=row.session_ip,
        )
        return session, _account(row)

    async def touch_session(self, token_hash: str) -> None:
        await self.db.execute(
            update(staff_sessions)
            .where(staff_sessions.c.token_hash == token_hash)
            .values(last_seen_at=self.now())
        )

    async def end_session(self, token_hash: str) -> None:
        await self.db.execute(
            delete(staff_sessions).where(staff_sessions.c.token_hash == token_hash)
        )

    async def end_sessions_of(self, account_id: int) -> None:
        await self.db.execute(
            delete(staff_sessions).where(staff_sessions.c.account_id == account_id)
        )

    async def end_idle_sessions(self, before: datetime) -> int:
        result = await self.db.execute(
            delete(staff_sessions).where(staff_sessions.c.last_seen_at < before)
        )
        return int(result.rowcount or 0)

    # ------------------------------------------------------------------ audit

    async def audit(
        self,
        action: str,
        *,
        account: StaffAccount | None,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
        ip: str | None = None,
        username: str | None = None,
    ) -> None:
        """Append one row. Never put what a person wrote here: references and ids only."""
        await self.db.execute(
            insert(staff_audit).values(
                at=self.now(),
                account_id=None if account is None else account.id,
                username=account.username if account is not None else username,
                action=action,
                target=target,
                detail=detail or {},
                ip=ip,
            )
        )

    async def audit_entries(
        self,
        *,
        before_id: int | None = None,
        limit: int = 100,
        account_id: int | None = None,
        target: str | None = None,
        action: str | None = None,
    ) -> list[AuditEntry]:
        statement = select(staff_audit).order_by(staff_audit.c.id.desc()).limit(limit)
        if before_id is not None:
            statement = statement.where(staff_audit.c.id < before_id)
        if account_id is not None:
            statement = statement.where(staff_audit.c.account_id == account_id)
        if target is not None:
            statement = statement.where(staff_audit.c.target == target)
        if action is not None:
            statement = statement.where(staff_audit.c.action == action)
        return [_audit(row) for row in await self.db.execute(statement)]


class StaffStore:
    """The staff side's handle on the database; shares the app's engine (and, on SQLite, its
    single writer connection), so keep transactions short and never nest them."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.clock = clock

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[StaffTx]:
        """Commits when the block ends normally; any exception rolls everything back."""
        with storage_errors():
            async with in_line_for_a_connection(self.engine), self.engine.connect() as connection:
                async with connection.begin():
                    db = Db(connection, self.clock)
                    try:
                        yield StaffTx(db)
                    finally:
                        db.closed = True
