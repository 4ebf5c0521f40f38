"""Single sign-on over OpenID Connect against a small local provider."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.oidc_provider import CLIENT_ID, CLIENT_SECRET, FakeProvider
from tests.staff.conftest import Staff, StartStaff


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    fake = FakeProvider()
    await fake.start()
    yield fake
    await fake.stop()


async def sso_staff(start_staff: StartStaff, provider: FakeProvider) -> Staff:
    staff = await start_staff(
        oidc_issuer=provider.issuer, oidc_client_id=CLIENT_ID, oidc_client_secret=CLIENT_SECRET
    )
    # The redirect URI is built from the public URL, here the test server's own address (known
    # only once it listens): set on the frozen settings the running app holds.
    from bot.staff.web import STAFF_APP, STAFF_SETTINGS

    settings = staff.server.app[STAFF_APP][STAFF_SETTINGS]
    object.__setattr__(settings, "public_url", staff.server.base_url)
    return staff


async def test_sign_in_through_the_provider(
    start_staff: StartStaff, provider: FakeProvider
) -> None:
    staff = await sso_staff(start_staff, provider)
    await staff.create("olivia")
    browser = await staff.browser()
    login = await browser.get("/staff/login")
    assert 'href="/staff/oidc/start"' in login.text
    page = await browser.get("/staff/oidc/start")
    assert page.status == 200 and 'href="/staff/reports" id="continue"' in page.text
    assert "Sign out olivia" in (await browser.get("/staff/reports")).text
    async with staff.store.transaction() as tx:
        entries = await tx.audit_entries(action="sign_in.oidc")
    assert entries[0].username == "olivia" and entries[0].detail == {"sub": "sub-olivia"}


@pytest.mark.parametrize(
    "spoil",
    ["unknown user", "no mfa", "wrong nonce", "wrong audience", "disabled", "forged state"],
)
async def test_single_sign_on_refusals(
    start_staff: StartStaff, provider: FakeProvider, spoil: str
) -> None:
    staff = await sso_staff(start_staff, provider)
    await staff.create("olivia")
    if spoil == "unknown user":
        provider.next_user = "mallory"
    elif spoil == "no mfa":
        provider.amr = ["pwd"]
    elif spoil == "wrong nonce":
        provider.nonce_override = "something-else"
    elif spoil == "wrong audience":
        provider.audience = "another-client"
    elif spoil == "disabled":
        async with staff.store.transaction() as tx:
            account = await tx.account_by_username("olivia")
            assert account is not None
            await tx.disable_account(account.id)
    browser = await staff.browser()
    if spoil == "forged state":
        page = await browser.get("/staff/oidc/callback?code=x&state=forged")
    else:
        page = await browser.get("/staff/oidc/start")
    assert page.status == 403 and "Single sign-on did not work" in page.text
    assert (await browser.get("/staff/reports", follow=False)).status == 303
    assert "sign_in.oidc" not in await staff.audit_actions()
    assert "sign_in.failed" in await staff.audit_actions()


async def test_without_configuration_there_is_no_single_sign_on(staff: Staff) -> None:
    browser = await staff.browser()
    assert "/staff/oidc/start" not in (await browser.get("/staff/login")).text
    assert (await browser.get("/staff/oidc/start")).status == 404
