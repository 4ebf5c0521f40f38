"""Browser tests of the web chat widget, in Debian's headless Chromium driven by Playwright.

Only the system browser at /usr/bin/chromium is used (`scripts/ensure-chromium` installs it);
Playwright never downloads one. Without it every browser test is skipped with the reason.
A failed test leaves a screenshot of each of its pages in test-artifacts/<test name>.png.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Debian's chromium; INTAKE_TEST_CHROMIUM may point elsewhere (e.g. to check the skip path).
CHROMIUM = Path(os.environ.get("INTAKE_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
AXE_SCRIPT = ROOT / "node_modules" / "axe-core" / "axe.min.js"
LIGHTHOUSE = ROOT / "node_modules" / "lighthouse" / "cli" / "index.js"
NO_NODE_TOOLS = (
    "axe-core and Lighthouse are not installed: run `make staff-assets` (needs npm) to run the "
    "accessibility audits"
)
NO_CHROMIUM = (
    f"{CHROMIUM} is missing: run scripts/ensure-chromium (as root it installs Debian's "
    "chromium package) to run the browser tests"
)

CHROMIUM_PRESENT = CHROMIUM.exists()

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason=NO_CHROMIUM)
    here = Path(__file__).parent
    for item in items:
        if "browser" in item.keywords and here in Path(str(item.path)).parents:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def artifact_name(node_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", node_name).strip("_")


# ---------------------------------------------------------------------- the server


@dataclass
class WidgetServer:
    runner: Any
    base_url: str


StartWidgetServer = Callable[..., Awaitable[WidgetServer]]


@pytest.fixture
async def start_widget_server(tmp_path: Path) -> AsyncIterator[StartWidgetServer]:
    """`await start_widget_server(allowed_origins=(...))`: the whole app (`build_app`) on a
    fresh SQLite file with the small fictional directory, on 127.0.0.1 and a free port."""
    from aiohttp import web

    from bot.app import build_app
    from bot.config import Settings
    from tests.fixtures import SMALL_DIRECTORY

    runners: list[Any] = []

    async def start(**overrides: Any) -> WidgetServer:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / f't{len(runners)}.sqlite3'}",
            directory_csv=SMALL_DIRECTORY,
            **overrides,
        )
        runner = web.AppRunner(build_app(settings), access_log=None, handle_signals=False)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return WidgetServer(runner, f"http://{host}:{port}")

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


class PartnerSite:
    """Pages of our own making on their own loopback port: another origin than the chat's, as
    a partner's site (or a hostile one) would be. Each page is a template; `{api}` (the chat
    server's base URL, set once it is known) and `{origin}` (this site's) are filled in when
    it is served."""

    def __init__(self, pages: Mapping[str, str]) -> None:
        self.pages = dict(pages)
        self.api = ""
        self.origin = ""
        self._runner: Any = None

    async def _serve(self, request: Any) -> Any:
        from aiohttp import web

        body = self.pages[request.path].format(api=self.api, origin=self.origin)
        return web.Response(text=body, content_type="text/html")

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        for path in self.pages:
            app.router.add_get(path, self._serve)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.origin = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


StartPartnerSite = Callable[[Mapping[str, str]], Awaitable[PartnerSite]]


@pytest.fixture
async def partner_site() -> AsyncIterator[StartPartnerSite]:
    """Start a `PartnerSite` with these pages (path -> template); stopped after the test."""
    started: list[PartnerSite] = []

    async def start(pages: Mapping[str, str]) -> PartnerSite:
        site = PartnerSite(pages)
        await site.start()
        started.append(site)
        return site

    yield start
    for site in started:
        await site.stop()


# ---------------------------------------------------------------------- the browser


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM_PRESENT:
        pytest.skip(NO_CHROMIUM)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class PageWatch:
    """What a page did that a test must not miss: dialogs (alert = script ran), script errors,
    and console errors (for example a Content Security Policy refusal)."""

    dialogs: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert not self.dialogs, f"a dialog opened (script ran): {self.dialogs}"
        assert not self.page_errors, f"script errors: {self.page_errors}"
        csp = [m for m in self.console_errors if "Content Security Policy" in m or "Refused" in m]
        assert not csp, f"refused by the Content Security Policy: {csp}"


NewPage = Callable[..., Awaitable[Any]]


@pytest.fixture
async def new_page(browser: Any, request: pytest.FixtureRequest) -> AsyncIterator[NewPage]:
    """`await new_page(viewport=PHONE, **context_options)` gives a page in a fresh context
    (its own sessionStorage). Each page has `.watch` (a PageWatch). On failure, screenshots."""
    contexts: list[Any] = []
    pages: list[Any] = []

    async def make(viewport: dict[str, int] | None = None, **options: Any) -> Any:
        options.setdefault("reduced_motion", "reduce")
        context = await browser.new_context(viewport=viewport or DESKTOP, **options)
        contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(10_000)
        watch = PageWatch()

        async def on_dialog(dialog: Any) -> None:
            watch.dialogs.append(f"{dialog.type}: {dialog.message}")
            await dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda error: watch.page_errors.append(str(error)))
        page.on(
            "console",
            lambda message: (
                watch.console_errors.append(message.text) if message.type == "error" else None
            ),
        )
        page.watch = watch
        pages.append(page)
        return page

    yield make

    failed = any(
        getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
        for when in ("setup", "call")
    )
    if failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for index, page in enumerate(pages):
            suffix = "" if index == 0 else f"-{index + 1}"
            path = ARTIFACTS / f"{artifact_name(request.node.name)}{suffix}.png"
            try:
                await page.screenshot(path=str(path), full_page=False)
            except Exception as error:  # the page may be gone; the failure is what matters
                print(f"could not save {path}: {error}")
    for context in contexts:
        await context.close()


async def save_screenshot(page: Any, name: str) -> Path:
    """Screenshots kept on success too, for a person to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path


# ---------------------------------------------------------------------- the chat, as a test drives it


#: The chat's frame on the embedding page (widget.js adds it; chat.html is its document).
CHAT_FRAME = "iframe.ciw-frame"


class Chat:
    """The widget on a page, addressed through its public hooks. On the embedding page: the
    launcher and the frame (shown = open). Inside the frame: data-step on the root,
    data-choice-id on choice buttons, data-role on messages, data-turn counting replies."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.embed = page.locator(".ciw-embed")
        self.launcher = page.locator(".ciw-launcher")
        #: The frame element on the page: visible while the chat is open.
        self.frame_element = page.locator(CHAT_FRAME)
        inside = page.frame_locator(CHAT_FRAME)
        self.inside = inside
        self.root = inside.locator(".ciw-root")
        self.panel = inside.locator(".ciw-panel")
        self.log = inside.locator(".ciw-log")
        self.textarea = inside.locator(".ciw-input")
        self.send_button = inside.locator(".ciw-send")
        self.alert = inside.locator(".ciw-alert")

    async def frame(self) -> Any:
        """The frame's document (a Playwright Frame), for evaluating script inside it."""
        handle = await self.page.wait_for_selector(CHAT_FRAME, state="attached")
        frame = await handle.content_frame()
        assert frame is not None, "the chat frame has no document"
        await frame.wait_for_selector(".ciw-root", state="attached")
        return frame

    async def evaluate(self, script: str, arg: Any = None) -> Any:
        """Run `script` in the frame's document (as a person's own browser could; the page
        that embeds it cannot)."""
        return await (await self.frame()).evaluate(script, arg)

    async def has_focus(self, condition: str) -> bool:
        """Whether the focus is in the frame, on an element where `condition` (JS, on `el`)."""
        return bool(
            await self.evaluate(
                f"() => {{ const el = document.activeElement;"
                f" return document.hasFocus() && !!el && !!({condition}); }}"
            )
        )

    async def begin(self, experience: str, service_type: str) -> None:
        """From the welcome to the provider question: the opening most tests share."""
        await self.wait_step("welcome")
        await self.choose("start")
        await self.choose(experience)
        await self.choose(service_type)
        await self.wait_step("provider")

    def choice(self, choice_id: str) -> Any:
        return self.inside.locator(f'.ciw-choice[data-choice-id="{choice_id}"]')

    def tool(self, command: str) -> Any:
        return self.inside.locator(f'.ciw-tool[data-command="{command}"]')

    async def turn(self) -> int:
        value = await self.root.get_attribute("data-turn")
        return int(value or 0)

    async def wait_turn_after(self, before: int, wait_ms: float = 10_000) -> None:
        frame = await self.frame()
        await frame.wait_for_function(
            "n => Number(document.querySelector('.ciw-root').dataset.turn || 0) > n",
            arg=before,
            timeout=wait_ms,
        )

    async def wait_step(self, step: str, wait_ms: float = 10_000) -> None:
        frame = await self.frame()
        await frame.wait_for_selector(
            f'.ciw-root[data-step="{step}"] .ciw-panel[aria-busy="false"]', timeout=wait_ms
        )

    async def step(self) -> str:
        return await self.root.get_attribute("data-step") or ""

    async def choose(self, choice_id: str) -> None:
        before = await self.turn()
        await self.choice(choice_id).click()
        await self.wait_turn_after(before)

    async def answer(self, text: str, *, with_button: bool = False) -> None:
        before = await self.turn()
        await self.textarea.fill(text)
        if with_button:
            await self.send_button.click()
        else:
            await self.textarea.press("Enter")
        await self.wait_turn_after(before)

    async def user_texts(self) -> list[str]:
        return await self.inside.locator('.ciw-msg[data-role="user"] .ciw-text').all_text_contents()

    async def bot_texts(self) -> list[str]:
        return await self.inside.locator('.ciw-msg[data-role="bot"] .ciw-text').all_text_contents()

    async def session(self) -> dict[str, str]:
        """The {conversation_id, token} the chat keeps in its own origin's sessionStorage."""
        stored = await self.evaluate(
            """() => {
                for (let i = 0; i < sessionStorage.length; i++) {
                    const key = sessionStorage.key(i);
                    if (key.startsWith('care-intake-chat:')) return sessionStorage.getItem(key);
                }
                return null;
            }"""
        )
        assert stored, "the widget stored no session"
        import json

        return dict(json.loads(stored))

    async def complete_report(self) -> None:
        """A whole report about poor care in a care home, by clicking and typing."""
        await self.wait_step("welcome")
        await self.choose("start")
        await self.wait_step("experience")
        await self.choose("poor")
        await self.choose("care_home")
        await self.wait_step("provider")
        await self.answer("Castle View Care Home, Lancaster", with_button=True)
        if await self.step() == "provider":  # matches offered as choices
            first = self.inside.locator(".ciw-choice").first
            before = await self.turn()
            await first.click()
            await self.wait_turn_after(before)
        await self.wait_step("relationship")
        await self.choose("friend_family")
        await self.wait_step("when")
        await self.answer("Last week, and it is still happening")
        await self.wait_step("service_part")
        await self.choose("skip")
        await self.wait_step("what_happened")
        await self.answer(
            "My dad was left without water for hours.\nStaff did not answer the bell."
        )
        await self.wait_step("share_with_service")
        await self.choose("yes")
        await self.wait_step("risk")
        await self.choose("no")
        await self.choose("neither")
        await self.wait_step("complaint")
        await self.choose("not_yet")
        await self.wait_step("complaint_info")
        await self.choose("continue")
        await self.wait_step("contact")
        await self.choose("yes")
        await self.wait_step("contact_name")
        await self.answer("Sam Taylor")
        await self.wait_step("contact_email")
        await self.answer("sam.taylor@example.org")
        await self.wait_step("contact_phone")
        await self.choose("skip")
        if await self.step() == "alerts":  # offered for a service found in the directory
            await self.choose("no")
        await self.wait_step("referral")
        await self.choose("no")
        await self.wait_step("summary")
        await self.choose("submit")
        await self.wait_step("submitted")


class OpenedChat(NamedTuple):
    """What `open_chat` gives: unpack as `server, page, chat = await open_chat(...)`."""

    server: WidgetServer
    page: Any
    chat: Chat


OpenChat = Callable[..., Awaitable[OpenedChat]]


@pytest.fixture
def open_chat(start_widget_server: StartWidgetServer, new_page: NewPage) -> OpenChat:
    """`await open_chat(viewport=PHONE)`: the app served, a fresh page on it, and the chat open
    there at its welcome (the frame shown, the first message in). The options that differ
    between tests:

    - `viewport` (DESKTOP unless given) and any other browser context option as a keyword
      (`has_touch`, `bypass_csp`, `device_scale_factor`, `locale`, ...);
    - `path`: the page to open, on the chat's server, or on `embedded_on` when given;
    - `app_settings`: passed on to the app's Settings (`links`, `exit_url`, ...);
    - `server`: one already started (so that several pages share it) instead of a new one;
    - `embedded_on`: a PartnerSite whose page embeds the chat; its origin is then allowed
      (unless `app_settings` says otherwise) and its `{api}` is the chat's server;
    - `press_launcher`: for a page that does not open the chat by itself.
    """

    async def open_(
        *,
        viewport: dict[str, int] | None = None,
        path: str = "/",
        app_settings: Mapping[str, Any] | None = None,
        server: WidgetServer | None = None,
        embedded_on: PartnerSite | None = None,
        press_launcher: bool = False,
        **context_options: Any,
    ) -> OpenedChat:
        if server is None:
            settings = dict(app_settings or {})
            if embedded_on is not None:
                settings.setdefault("allowed_origins", (embedded_on.origin,))
            server = await start_widget_server(**settings)
        elif app_settings:
            raise TypeError("app_settings go to the server that open_chat starts, not to `server`")
        page = await new_page(viewport=viewport, **context_options)
        if embedded_on is not None:
            embedded_on.api = server.base_url
            await page.goto(embedded_on.origin + path)
        else:
            await page.goto(server.base_url + path)
        chat = Chat(page)
        if press_launcher:
            await chat.launcher.click()
        await chat.frame_element.wait_for(state="visible")
        await chat.wait_step("welcome")
        return OpenedChat(server, page, chat)

    return open_


# ---------------------------------------------------------------------- axe-core


@pytest.fixture(scope="session")
def axe_script() -> Path:
    """axe-core as package-lock.json pins it (`make staff-assets` installs it with npm)."""
    if not AXE_SCRIPT.exists():
        pytest.skip(NO_NODE_TOOLS)
    return AXE_SCRIPT


async def axe_violations(page: Any, axe_script: Path) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations (WCAG 2.0-2.2 A and AA rules) on the page and
    in its frames (the chat's frame included: axe runs in each and reports to the top)."""
    for frame in page.frames:
        if frame.url.startswith("about:") or frame.is_detached():
            continue
        if not await frame.evaluate("() => typeof window.axe !== 'undefined'"):
            await frame.add_script_tag(path=str(axe_script))
    result = await page.evaluate(
        """async () => {
            const r = await axe.run(document, {
                runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']},
                resultTypes: ['violations'],
            });
            return r.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => n.target.join(' ') + ' :: ' + n.failureSummary),
            }));
        }"""
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]
