"""Lighthouse's accessibility and best-practice audits, as the issue's checker runs them: the
chat (the page inside the widget's frame) on 320 px and 360 px phones and a desktop, and the
staff sign-in page. Every audit must pass (score 1); a failure names the audits that did not.

axe-core (tests/e2e/test_widget_a11y.py) checks the chat in the middle of a conversation;
Lighthouse checks what a first visit loads, with its own rules beside axe's (tap targets,
viewport, console errors, deprecated APIs). Both are pinned by package-lock.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ARTIFACTS, CHROMIUM, LIGHTHOUSE, NO_NODE_TOOLS

pytestmark = pytest.mark.browser

CATEGORIES = ("accessibility", "best-practices")

#: Lighthouse's own emulation flags for each screen (a phone is emulated as mobile, touch
#: included; "desktop" is its desktop preset).
SCREENS: dict[str, list[str]] = {
    "phone-320": [
        "--form-factor=mobile",
        "--screenEmulation.mobile",
        "--screenEmulation.width=320",
        "--screenEmulation.height=640",
        "--screenEmulation.deviceScaleFactor=2",
    ],
    "phone-360": [
        "--form-factor=mobile",
        "--screenEmulation.mobile",
        "--screenEmulation.width=360",
        "--screenEmulation.height=740",
        "--screenEmulation.deviceScaleFactor=3",
    ],
    "desktop": ["--preset=desktop"],
}


async def lighthouse(url: str, screen: str, report: Path, home: Path) -> dict[str, Any]:
    """Run the Lighthouse CLI on `url` and return its JSON result (also kept in `report`);
    `home` is a scratch HOME, so nothing it or Chromium writes lands in the checkout."""
    node = shutil.which("node")
    if node is None or not LIGHTHOUSE.exists():
        pytest.skip(NO_NODE_TOOLS)
    process = await asyncio.create_subprocess_exec(
        node,
        str(LIGHTHOUSE),
        url,
        f"--only-categories={','.join(CATEGORIES)}",
        "--output=json",
        f"--output-path={report}",
        "--chrome-flags=--headless=new --no-sandbox --disable-gpu",
        "--quiet",
        *SCREENS[screen],
        env={"CHROME_PATH": str(CHROMIUM), "PATH": os.environ.get("PATH", ""), "HOME": str(home)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=240)
    assert process.returncode == 0, f"Lighthouse failed on {url} ({screen}):\n{output.decode()}"
    result: dict[str, Any] = json.loads(await asyncio.to_thread(report.read_text, "utf-8"))
    assert result.get("runtimeError") is None, result["runtimeError"]
    return result


def failures(result: dict[str, Any]) -> list[str]:
    """Every scored audit in our categories that did not pass, with what it found."""
    failed = []
    for category in CATEGORIES:
        for ref in result["categories"][category]["auditRefs"]:
            audit = result["audits"][ref["id"]]
            if audit.get("scoreDisplayMode") in ("binary", "numeric") and audit["score"] != 1:
                items = audit.get("details", {}).get("items", [])
                found = [str(i.get("node", {}).get("snippet", i))[:200] for i in items[:5]]
                failed.append(f"{category}/{audit['id']}: {audit['title']} {found}")
    return failed


async def test_lighthouse_passes_every_audit_on_the_chat_and_the_staff_sign_in(
    start_widget_server: Any, tmp_path: Path
) -> None:
    server = await start_widget_server()
    ARTIFACTS.mkdir(exist_ok=True)
    runs = [(f"{server.base_url}/chat.html", screen, f"chat-{screen}") for screen in SCREENS]
    runs.append((f"{server.base_url}/staff/", "desktop", "staff-sign-in-desktop"))
    # One Chromium each, side by side: these audits do not measure speed.
    results = await asyncio.gather(
        *(
            lighthouse(url, screen, ARTIFACTS / f"lighthouse-{name}.json", tmp_path)
            for url, screen, name in runs
        )
    )
    problems = []
    for (url, screen, _), result in zip(runs, results, strict=True):
        assert result["finalDisplayedUrl"].startswith(url), result["finalDisplayedUrl"]
        scores = {c: result["categories"][c]["score"] for c in CATEGORIES}
        problems += [f"{url} ({screen}) {scores}: {f}" for f in failures(result)]
        assert all(score is not None for score in scores.values()), (url, screen, scores)
    assert not problems, "\n".join(problems)
