"""Accounts, enrolment, sign-in with password and TOTP, sessions, CSRF, lockout, throttling,
security headers, and the audit rows they leave."""

from __future__ import annotations

import pytest

from bot.cli import main
from tests.staff.conftest import PASSWORD, Staff, StartStaff


async def test_with_no_account_staff_page_only_says_how_to_create_one(staff: Staff) -> None:
    browser = await staff.browser()
    page = await browser.get("/staff/")
    assert page.status == 200
    assert "intake staff add" in page.text
    assert "/staff/reports" not in page.text and "Sign out" not in page.text
    # Everything else still needs a session.
    queue = await browser.get("/staff/reports", follow=False)
    assert queue.status == 303 and queue.headers["Location"].startswith("/staff/login")


async def test_officer_enrols_signs_in_and_out(staff: Staff) -> None:
    browser, _ = await staff.signed_in("olivia")
    assert (await browser.get("/staff/reports")).status == 200
    queue = await browser.get("/staff/reports")
    out = await browser.post("/staff/logout", {"csrf_token": queue.csrf})
    assert "You have signed out" in out.text
    assert (await browser.get("/staff/reports", follow=False)).status == 303
    assert await staff.audit_actions() == [
        "account.add",
        "account.enrol",
        "sign_in",
        "queue.view",
        "queue.view",
        "queue.view",
        "sign_out",
    ]


async def test_enrolment_link_works_once(staff: Staff) -> None:
    browser = await staff.browser()
    path = await staff.create("oscar")
    await staff.enrol(browser, path)
    again = await browser.get(path)
    assert again.status == 404 and "does not work" in again.text


async def test_sign_in_needs_the_password_and_a_fresh_code(staff: Staff) -> None:
    browser = await staff.browser()
    secret = await staff.enrol(browser, await staff.create("owen"))
    wrong_password = await browser.submit(
        "/staff/login",
        "/staff/login",
        {"username": "owen", "password": "not it at all!", "code": staff.code(secret)},
    )
    assert "not right" in wrong_password.text and "Sign out" not in wrong_password.text
    wrong_code = await browser.submit(
        "/staff/login", "/staff/login", {"username": "owen", "password": PASSWORD, "code": "000000"}
    )
    assert "not right" in wrong_code.text
    code = staff.code(secret)
    ok = await browser.submit(
        "/staff/login", "/staff/login", {"username": "owen", "password": PASSWORD, "code": code}
    )
    assert "Sign out" in ok.text
    # The same code again, from another browser: refused (no replay).
    other = await staff.browser()
    replay = await other.submit(
        "/staff/login", "/staff/login", {"username": "owen", "password": PASSWORD, "code": code}
    )
    assert "not right" in replay.text


async def test_repeated_failures_lock_the_account(start_staff: StartStaff) -> None:
    staff = await start_staff(max_failed_sign_ins=3, lockout_minutes=15)
    browser = await staff.browser()
    secret = await staff.enrol(browser, await staff.create("opal"))
    for _ in range(3):
        await browser.submit(
            "/staff/login",
            "/staff/login",
            {"username": "opal", "password": "wrong password!", "code": staff.code(secret)},
        )
    locked = await staff.sign_in(browser, "opal", secret)
    assert "locked" in locked.text and "Sign out" not in locked.text
    staff.clock.advance(minutes=16)
    assert "Sign out" in (await staff.sign_in(browser, "opal", secret)).text
    actions = await staff.audit_actions()
    assert actions.count("sign_in.failed") == 3 and "sign_in.locked" in actions


async def test_sign_in_attempts_are_throttled_per_address(start_staff: StartStaff) -> None:
    staff = await start_staff(sign_ins_per_minute=2)
    browser = await staff.browser()
    statuses = []
    for _ in range(3):
        page = await browser.submit(
            "/staff/login", "/staff/login", {"username": "x", "password": "y", "code": "1"}
        )
        statuses.append(page.status)
    assert statuses == [200, 200, 429]


async def test_idle_session_expires(start_staff: StartStaff) -> None:
    staff = await start_staff(idle_minutes=30)
    browser, _ = await staff.signed_in("ida")
    staff.clock.advance(minutes=29)
    assert (await browser.get("/staff/reports")).status == 200
    staff.clock.advance(minutes=31)
    page = await browser.get("/staff/reports")
    assert "had not used the service" in page.text
    assert (await browser.get("/staff/reports", follow=False)).status == 303
    assert "session.expired" in await staff.audit_actions()


async def test_disabling_an_account_ends_its_sessions_at_once(staff: Staff) -> None:
    admin, _ = await staff.signed_in("ada", "admin")
    officer, _ = await staff.signed_in("otto")
    assert (await officer.get("/staff/reports")).status == 200
    done = await admin.submit("/staff/admin/accounts", "/staff/admin/accounts/otto/disable", {})
    assert done.status == 200 and "Disabled" in done.text
    assert (await officer.get("/staff/reports", follow=False)).status == 303


async def test_forms_without_the_csrf_token_change_nothing(staff: Staff) -> None:
    admin, _ = await staff.signed_in("ada", "admin")
    forged = await admin.post(
        "/staff/admin/accounts", {"username": "mallory", "display_name": "M", "role": "admin"}
    )
    assert forged.status == 403
    wrong = await admin.post(
        "/staff/admin/accounts",
        {"csrf_token": "x" * 43, "username": "mallory", "display_name": "M", "role": "admin"},
    )
    assert wrong.status == 403
    async with staff.store.transaction() as tx:
        assert await tx.account_by_username("mallory") is None
    # The sign-in form too (login CSRF): a post without the form's cookie token is refused.
    stranger = await staff.browser()
    assert (await stranger.post("/staff/login", {"username": "ada", "password": "x"})).status == 403


async def test_cookies_and_security_headers(start_staff: StartStaff) -> None:
    staff = await start_staff(secure_cookies=True)
    browser = await staff.browser()
    page = await browser.get("/staff/login")
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert "script-src" not in csp and "default-src 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    cookie = page.headers["Set-Cookie"]
    for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/staff/"):
        assert flag in cookie, cookie


async def test_sign_in_cookie_flags(staff: Staff) -> None:
    browser = await staff.browser()
    secret = await staff.enrol(browser, await staff.create("sam"))
    form = await browser.get("/staff/login")
    page = await browser.post(
        "/staff/login",
        {
            "csrf_token": form.csrf,
            "username": "sam",
            "password": PASSWORD,
            "code": staff.code(secret),
        },
        follow=False,
    )
    assert page.status == 303
    cookie = page.headers["Set-Cookie"]
    assert "intake_staff_session=" in cookie
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/staff/"):
        assert flag in cookie, cookie


async def test_staff_can_be_turned_off_or_kept_to_internal_networks(
    start_staff: StartStaff,
) -> None:
    from ipaddress import ip_network

    staff = await start_staff(allowed_networks=(ip_network("10.0.0.0/8"),))
    browser = await staff.browser()
    assert (await browser.get("/staff/login")).status == 404


async def test_staff_disabled(start_server) -> None:  # type: ignore[no-untyped-def]
    import aiohttp

    from bot.staff.config import StaffSettings

    server = await start_server(staff=StaffSettings(enabled=False))
    async with aiohttp.ClientSession() as session:
        async with session.get(server.base_url + "/staff/") as response:
            assert response.status == 404


def test_cli_add_disable_reset(
    staff_db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTAKE_DATABASE_URL", staff_db_url)
    monkeypatch.setenv("INTAKE_STAFF_PUBLIC_URL", "https://intake.internal")
    assert main(["staff", "add", "alice", "--name", "Alice Admin", "--role", "admin"]) == 0
    out = capsys.readouterr().out
    assert "https://intake.internal/staff/enrol/" in out
    assert main(["staff", "add", "alice", "--name", "Again"]) == 1
    assert main(["staff", "reset", "alice"]) == 0
    assert "https://intake.internal/staff/enrol/" in capsys.readouterr().out
    assert main(["staff", "disable", "alice"]) == 0
    assert "disabled" in capsys.readouterr().out
    assert main(["staff", "disable", "nobody"]) == 1


async def test_stylesheet_is_govuk_frontend_without_the_govuk_only_typeface(staff: Staff) -> None:
    browser = await staff.browser()
    css = await browser.get("/staff/assets/govuk-frontend.min.css")
    assert css.status == 200 and ".govuk-button" in css.text
    assert "@font-face" not in css.text and "url(/assets/" not in css.text
    assert (await browser.get("/staff", follow=False)).headers["Location"] == "/staff/"


async def test_a_link_from_another_site_is_opened_again_from_ours(staff: Staff) -> None:
    """SameSite=Strict: the browser sends no session cookie on a link from elsewhere, so the
    page navigates again, same-site, instead of asking a signed-in person to sign in."""
    browser = await staff.browser()
    async with browser.session.get(
        staff.server.base_url + "/staff/reports/ABCD-2345?x=1",
        headers={"Sec-Fetch-Site": "cross-site"},
        allow_redirects=False,
    ) as response:
        body = await response.text()
    assert response.status == 200
    assert 'content="0; url=/staff/reports/ABCD-2345?x=1"' in body
    assert "ABCD-2345?x=1" in body and "Sign out" not in body
    same_site = await browser.get("/staff/reports/ABCD-2345", follow=False)
    assert same_site.status == 303
