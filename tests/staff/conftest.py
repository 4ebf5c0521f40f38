"""A real server on loopback with the staff application, a browser-like client that keeps
cookies, and helpers to create, enrol and sign in staff accounts over HTTP."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pyotp
import pytest

from bot.appkeys import STORAGE
from bot.ports import StoredReport
from bot.staff.accounts import add_account
from bot.staff.config import StaffSettings
from bot.staff.web import STAFF_APP, STAFF_SETTINGS, STAFF_STORE
from storage.staff import StaffStore
from tests.conftest import RunningServer, StartServer

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SECRET = re.compile(r'name="secret" value="([A-Z2-7]+)"')
PASSWORD = "correct horse battery staple"


class Clock:
    """Real time plus an offset a test can advance (idle expiry, lockout, TOTP steps)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **kwargs: float) -> None:
        self.offset += timedelta(**kwargs)


@dataclass
class Page:
    status: int
    text: str
    headers: Any
    url: str

    @property
    def csrf(self) -> str:
        found = CSRF.search(self.text)
        assert found, f"no CSRF token on {self.url}"
        return found.group(1)


@dataclass
class Browser:
    """One person's browser: its own cookie jar; redirects are followed unless told not to."""

    base_url: str
    session: aiohttp.ClientSession
    last: Page | None = None

    async def get(self, path: str, *, follow: bool = True) -> Page:
        async with self.session.get(self.base_url + path, allow_redirects=follow) as response:
            page = Page(response.status, await response.text(), response.headers, str(response.url))
        self.last = page
        return page

    async def post(self, path: str, data: dict[str, str], *, follow: bool = True) -> Page:
        async with self.session.post(
            self.base_url + path, data=data, allow_redirects=follow
        ) as response:
            page = Page(response.status, await response.text(), response.headers, str(response.url))
        self.last = page
        return page

    async def submit(self, form_path: str, action: str, data: dict[str, str], **kw: Any) -> Page:
        """Open the page with the form, then post it with that page's CSRF token."""
        page = await self.get(form_path)
        return await self.post(action, {"csrf_token": page.csrf, **data}, **kw)


@dataclass
class Staff:
    server: RunningServer
    clock: Clock
    store: StaffStore
    browsers: list[aiohttp.ClientSession] = field(default_factory=list)

    async def browser(self) -> Browser:
        session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=30)
        )
        self.browsers.append(session)
        return Browser(self.server.base_url, session)

    async def create(self, username: str, role: str = "officer") -> str:
        """An account as `intake staff add` makes it; returns the enrolment path."""
        settings = self.server.app[STAFF_APP][STAFF_SETTINGS]
        async with self.store.transaction() as tx:
            link = await add_account(
                tx, settings, username=username, display_name=username.title(), role=role, by=None
            )
        return urlsplit(link.url).path

    async def enrol(self, browser: Browser, enrol_path: str, password: str = PASSWORD) -> str:
        page = await browser.get(enrol_path)
        assert page.status == 200, page.text
        secret_match = SECRET.search(page.text)
        assert secret_match
        secret = secret_match.group(1)
        code = pyotp.TOTP(secret).at(self.clock())
        done = await browser.post(
            enrol_path,
            {
                "csrf_token": page.csrf,
                "secret": secret,
                "password": password,
                "confirm": password,
                "code": code,
            },
        )
        assert "Your account is ready" in done.text, done.text
        return secret

    def code(self, secret: str) -> str:
        """A code for a fresh time step: move the clock on one step so it was never used."""
        self.clock.advance(seconds=30)
        return pyotp.TOTP(secret).at(self.clock())

    async def sign_in(
        self, browser: Browser, username: str, secret: str, password: str = PASSWORD
    ) -> Page:
        return await browser.submit(
            "/staff/login",
            "/staff/login",
            {"username": username, "password": password, "code": self.code(secret)},
        )

    async def signed_in(self, username: str, role: str = "officer") -> tuple[Browser, str]:
        browser = await self.browser()
        secret = await self.enrol(browser, await self.create(username, role))
        page = await self.sign_in(browser, username, secret)
        assert page.status == 200 and "Sign out" in page.text, page.text
        return browser, secret

    async def add_report(
        self,
        reference: str,
        *,
        priority: str = "routine",
        minutes_ago: float = 10,
        data: dict[str, Any] | None = None,
        channel: str = "web",
        locale: str = "en",
    ) -> None:
        storage = self.server.app[STORAGE]
        async with storage.unit_of_work() as uow:
            await uow.reports.add(
                StoredReport(
                    reference=reference,
                    conversation_id=f"conv-{reference}",
                    created_at=datetime.now(UTC) - timedelta(minutes=minutes_ago),
                    channel=channel,  # type: ignore[arg-type]
                    locale=locale,
                    priority=priority,  # type: ignore[arg-type]
                    data={"reference": reference, "priority": priority, **(data or {})},
                )
            )
            await uow.commit()

    async def audit_actions(self, target: str | None = None) -> list[str]:
        async with self.store.transaction() as tx:
            entries = await tx.audit_entries(limit=1000, target=target)
        return [e.action for e in reversed(entries)]


StartStaff = Callable[..., Awaitable[Staff]]


@pytest.fixture
async def start_staff(start_server: StartServer) -> AsyncIterator[StartStaff]:
    made: list[Staff] = []

    async def start(**overrides: Any) -> Staff:
        settings = replace(StaffSettings(secure_cookies=False), **overrides)
        server = await start_server(staff=settings)
        clock = Clock()
        store = server.app[STAFF_APP][STAFF_STORE]
        store.clock = clock
        staff = Staff(server, clock, store)
        made.append(staff)
        return staff

    yield start
    for staff in made:
        for session in staff.browsers:
            await session.close()


@pytest.fixture
async def staff(start_staff: StartStaff) -> Staff:
    return await start_staff()


@pytest.fixture
def staff_db_url(server_settings: Any) -> str:
    return str(server_settings.database_url)
