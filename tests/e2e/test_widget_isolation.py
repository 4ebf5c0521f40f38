"""The page that embeds the widget learns nothing of the conversation.

The chat lives in a frame served from the intake server's own origin: its token, conversation
id, unsent draft and transcript are out of reach of the embedding page, even one that is
allowed to embed it and actively tries to read them. And a page that is not allowed cannot
frame the chat at all (CSP frame-ancestors), even by adding the frame itself.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import DESKTOP, OpenChat, PartnerSite, StartPartnerSite, save_screenshot

pytestmark = pytest.mark.browser

DRAFT = "My daughter was restrained on ward 7"
SENT = "Castle View Care Home, Lancaster"

#: A page on another origin that embeds the widget and then tries every way to read it.
HOSTILE_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>A curious partner</title></head>
<body>
<main><h1>Partner page</h1></main>
<script>
  // What an earlier version of the widget left in this page's storage: the loader removes it.
  sessionStorage.setItem("care-intake-chat:{api}", '{{"conversation_id": "old", "token": "old"}}');
  sessionStorage.setItem("care-intake-draft:{api}", "an old draft");
  window.__heard = [];
  window.addEventListener("message", (event) => {{
    window.__heard.push({{origin: event.origin, data: JSON.stringify(event.data)}});
  }});
  window.__snoop = () => {{
    const found = {{}};
    const attempt = (name, read) => {{
      try {{
        const value = read();
        found[name] = value === undefined || value === null ? null : String(value);
      }} catch (error) {{
        found[name] = "blocked: " + error.name;
      }}
    }};
    const frame = document.querySelector("iframe");
    const storage = (s) => JSON.stringify(Object.fromEntries(
      Array.from({{length: s.length}}, (_, i) => [s.key(i), s.getItem(s.key(i))])));
    attempt("dom", () => document.documentElement.outerHTML);
    attempt("text", () => document.body.innerText);
    attempt("localStorage", () => storage(window.localStorage));
    attempt("sessionStorage", () => storage(window.sessionStorage));
    attempt("cookies", () => document.cookie);
    attempt("contentDocument", () => frame.contentDocument && frame.contentDocument.body.innerHTML);
    attempt("frameDocument", () => frame.contentWindow.document.body.innerHTML);
    attempt("frameSessionStorage", () => storage(frame.contentWindow.sessionStorage));
    attempt("frameLocalStorage", () => storage(frame.contentWindow.localStorage));
    attempt("framesIndex", () => window.frames[0].document.documentElement.outerHTML);
    attempt("frameLocation", () => frame.contentWindow.location.href);
    attempt("heard", () => JSON.stringify(window.__heard));
    return found;
  }};
</script>
<script src="{api}/widget.js" defer></script>
</body>
</html>
"""

#: A page on an origin that is not allowed, framing the chat itself (no loader).
FRAMING_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Not allowed</title></head>
<body>
<script>
  window.__heard = [];
  window.addEventListener("message", (event) => window.__heard.push(event.data));
</script>
<iframe id="chat" title="chat" src="{api}/chat.html?host={origin}"></iframe>
</body>
</html>
"""


@pytest.fixture
async def hostile_site(partner_site: StartPartnerSite) -> PartnerSite:
    return await partner_site({"/": HOSTILE_PAGE})


@pytest.fixture
async def framing_site(partner_site: StartPartnerSite) -> PartnerSite:
    return await partner_site({"/": FRAMING_PAGE})


async def test_an_allowed_page_that_snoops_learns_nothing_but_open_and_closed(
    open_chat: OpenChat, hostile_site: PartnerSite
) -> None:
    server, page, chat = await open_chat(
        viewport=DESKTOP, embedded_on=hostile_site, press_launcher=True
    )
    await chat.begin("poor", "care_home")
    await chat.answer(SENT)
    if await chat.step() == "provider":
        await chat.choose("none")
    await chat.choose("friend_family")
    await chat.wait_step("when")
    await chat.textarea.fill(DRAFT)  # typed, not sent: kept as a draft
    await chat.inside.locator(".ciw-close").click()
    await chat.frame_element.wait_for(state="hidden")

    # What there is to steal, as the chat itself holds it (read from inside the frame).
    session = await chat.session()
    secrets = {
        "token": session["token"],
        "conversation id": session["conversation_id"],
        "draft": DRAFT,
        "sent answer": SENT,
        "a question": "What is the name of the service",
    }
    assert await chat.evaluate(
        "() => Object.keys(sessionStorage).some(k => sessionStorage.getItem(k) === "
        f"{json.dumps(DRAFT)})"
    ), "the draft is kept, in the chat's own storage"

    found = await page.evaluate("() => window.__snoop()")
    for name, value in found.items():
        for label, secret in secrets.items():
            assert secret not in (value or ""), f"the page read the {label} from {name}"
    assert found["localStorage"] == "{}"
    assert found["sessionStorage"] == "{}"
    assert found["cookies"] == ""
    for name in ("frameDocument", "frameSessionStorage", "frameLocalStorage", "framesIndex"):
        assert (found[name] or "").startswith("blocked"), (name, found[name])
    assert found["contentDocument"] is None
    assert (found["frameLocation"] or "").startswith("blocked")

    # All it heard, and only from the chat's origin: ready, and closed.
    heard = json.loads(found["heard"] or "[]")
    chat_messages = [json.loads(m["data"]) for m in heard if m["origin"] == server.base_url]
    assert chat_messages, "the frame said nothing to the page"
    for message in chat_messages:
        assert set(message) <= {"type", "event", "open"}, message
        assert message["event"] in ("ready", "close"), message
    assert {"type": "care-intake-chat", "event": "close"} in chat_messages

    # Its own messages are not heard: the page cannot drive the chat beyond open.
    await page.evaluate(
        """() => document.querySelector('iframe').contentWindow.postMessage(
            {type: 'care-intake-chat', event: 'send', text: 'injected'}, '*')"""
    )
    await chat.launcher.click()
    await chat.wait_step("when")
    assert await chat.textarea.input_value() == DRAFT
    assert "injected" not in await chat.user_texts()
    await save_screenshot(page, "widget-embed-isolated")
    page.watch.assert_clean()


async def test_an_origin_not_allowed_cannot_frame_the_chat(
    start_widget_server: Any, framing_site: PartnerSite, new_page: Any
) -> None:
    server = await start_widget_server(allowed_origins=("https://partner.example",))
    framing_site.api = server.base_url
    page = await new_page(viewport=DESKTOP)
    async with page.expect_console_message(
        lambda m: m.type == "error" and "frame-ancestors" in m.text
    ):
        await page.goto(framing_site.origin + "/")
    # The browser refused to show it there, citing frame-ancestors: nothing of ours runs.
    frame = next(f for f in page.frames if f != page.main_frame)
    assert not frame.url.startswith(server.base_url), frame.url
    assert await page.evaluate("() => window.__heard") == []

    # The chat page itself says who may frame it, and sends no X-Frame-Options to override.
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.base_url + "/chat.html") as response,
    ):
        policy = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'self' https://partner.example" in policy
        assert "X-Frame-Options" not in response.headers
