"""No secret reaches the logs of a real `intake serve` process.

The server runs as an operator runs it, with a Telegram token, a webhook secret (registered
with a fake Bot API), a database URL with a password (PostgreSQL, whose trust authentication
ignores it; SQLite when PostgreSQL is absent, which cannot carry one), and the API keys of
deliveries to come. Telegram updates and web turns go through it; then its whole output is
searched for every secret. At DEBUG the HTTP client's request lines are let through, so the
Bot API URLs with the token in them are there to leak, and must show it redacted.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.e2e.multiworker_support import (
    SMALL_DIRECTORY,
    admin_connection,
    free_port,
    fresh_database,
    start_serve,
    wait_ready,
)
from tests.fakes.telegram_api import FakeTelegramAPI

TOKEN = "918273:AAHzqSecretTokenValue_x-1"
WEBHOOK_SECRET = "zq-webhook-secret-value-88"
DB_PASSWORD = "Zq-db-password-771"
# In the formats the delivery settings check at start: a Notify key is
# "{name}-{service id}-{secret}", a signing secret "whsec_" + base64 of the key.
DELIVERY_SECRETS = {
    "INTAKE_NOTIFY_API_KEY": (
        "zqlogtest-3a1d6f2e-9b7c-4e1a-8f3d-2c5b6a7e8f90-7d2e1c4b-5a6f-4b3e-9c8d-1e2f3a4b5c6d"
    ),
    "INTAKE_ALERT_WEBHOOK_SECRET": "whsec_"
    + base64.b64encode(b"zq-alert-webhook-key-913").decode(),
    "INTAKE_HANDOFF_SECRET": "whsec_" + base64.b64encode(b"zq-handoff-key-264").decode(),
}
#: Not secrets, but what the delivery settings need beside them.
DELIVERY_SETTINGS = {
    "INTAKE_NOTIFY_TEMPLATE_EMAIL": "6c1f0b7e-2d3a-4c5b-8e9f-0a1b2c3d4e5f",
    "INTAKE_EMAIL_FROM": "intake@example.org",
    "INTAKE_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/alerts",
    "INTAKE_HANDOFF_URL": "http://127.0.0.1:9/cases",
}
SMTP_PASSWORD = "Zq-smtp-password-442"
_update_ids = itertools.count(70_000)


@contextlib.asynccontextmanager
async def database_with_password(tmp_path: Path) -> AsyncIterator[tuple[str, bool]]:
    """(URL, whether it carries DB_PASSWORD)."""
    try:
        connection = await admin_connection()
    except (OSError, TimeoutError, asyncpg.PostgresError):
        yield f"sqlite+aiosqlite:///{tmp_path / 'logs.sqlite3'}", False
        return
    await connection.close()
    async with fresh_database("intake_logs") as url:
        with_password = make_url(url).set(password=DB_PASSWORD)
        yield with_password.render_as_string(hide_password=False), True


def message_update(chat_id: int, text: str) -> dict[str, Any]:
    person = {"id": chat_id, "is_bot": False, "first_name": "Sam", "language_code": "en"}
    message: dict[str, Any] = {
        "message_id": next(_update_ids),
        "from": person,
        "chat": {"id": chat_id, "type": "private", "first_name": "Sam"},
        "date": int(time.time()),
        "text": text,
    }
    if text.startswith("/"):
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text)}]
    return {"update_id": next(_update_ids), "message": message}


async def converse(session: aiohttp.ClientSession, base_url: str, fake: FakeTelegramAPI) -> None:
    """Telegram updates and web turns, each answered."""
    headers = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
    for chat_id in (61_001, 61_002):
        for text in ("/start", "/help", "/privacy"):
            update = message_update(chat_id, text)
            async with session.post(
                f"{base_url}/telegram/webhook", json=update, headers=headers
            ) as response:
                assert response.status == 200
    await fake.wait_sent(6, within=20)
    async with session.post(f"{base_url}/api/v1/conversations", json={}) as response:
        assert response.status == 201
        conversation = await response.json()
    path = f"{base_url}/api/v1/conversations/{conversation['conversation_id']}/messages"
    auth = {"Authorization": f"Bearer {conversation['token']}"}
    for number, body in enumerate(({"choice": "start"}, {"choice": "poor"})):
        message = {**body, "client_message_id": f"m{number}"}
        async with session.post(path, json=message, headers=auth) as response:
            assert response.status == 200
    # A webhook call with a wrong secret is refused (and that refusal is logged, too).
    async with session.post(
        f"{base_url}/telegram/webhook",
        json=message_update(61_003, "/start"),
        headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET + "x"},
    ) as response:
        assert response.status in (401, 403)


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
async def test_no_secret_reaches_the_server_log(tmp_path: Path, level: str) -> None:
    fake = FakeTelegramAPI(TOKEN)
    await fake.start()
    try:
        async with database_with_password(tmp_path) as (database_url, has_password):
            process = start_serve(
                f"serve-{level.lower()}",
                database_url,
                free_port(),
                tmp_path,
                INTAKE_LOG_LEVEL=level,
                INTAKE_DIRECTORY_CSV=str(SMALL_DIRECTORY),
                INTAKE_TELEGRAM_TOKEN=TOKEN,
                INTAKE_TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET,
                INTAKE_TELEGRAM_API_BASE_URL=fake.url,
                INTAKE_TELEGRAM_PUBLIC_URL="https://intake.example.invalid",
                INTAKE_SMTP_URL=f"smtp://mailer:{SMTP_PASSWORD}@127.0.0.1:1",
                **DELIVERY_SECRETS,
                **DELIVERY_SETTINGS,
            )
            try:
                async with aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=30)
                ) as session:
                    await wait_ready(process, session)
                    await converse(session, process.base_url, fake)
                process.signal_group(signal.SIGTERM)
                process.popen.wait(timeout=30)
            finally:
                process.reap()
            output = process.output()
    finally:
        await fake.close()

    assert fake.of("setWebhook"), "the webhook (and its secret) was registered"
    secrets = [TOKEN, WEBHOOK_SECRET, SMTP_PASSWORD, *DELIVERY_SECRETS.values()]
    if has_password:
        secrets.append(DB_PASSWORD)
    leaked = [secret for secret in secrets if secret in output]
    assert not leaked, f"secrets in the log: {leaked}\n{output}"
    assert "Serving on" in output
    requests = re.findall(r"HTTP Request: POST \S+", output)
    if level == "DEBUG":
        # The lines that used to carry the token are there, with the token redacted.
        assert any(re.search(r"/bot\[redacted\]/sendMessage$", line) for line in requests), output
        assert all("[redacted]" in line for line in requests)
    else:
        assert requests == [], "the HTTP client's request lines are quiet below DEBUG"
