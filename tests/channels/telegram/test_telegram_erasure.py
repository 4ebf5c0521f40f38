"""/cancel and the "not ours" end in a Telegram chat keep nothing that was typed, in any table:
not the replies kept for redelivered updates, not the messages sent (or still to send) through
the outbox. Over the real webhook and python-telegram-bot, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.channels.telegram.conftest import StartTelegram
from tests.channels.telegram.tg_support import User
from tests.erasure_support import SUMMARY_TO_END, new_marker, path_to_summary, tables_holding
from tests.fakes.telegram_api import FakeTelegramAPI


async def walk(user: User, steps: list[tuple[str, str]]) -> None:
    for kind, value in steps:
        if kind == "choice":
            await user.tap(value)
        else:
            await user.say(value)


@pytest.mark.parametrize("ending", ["cancel", "exit", "end"])
async def test_the_chat_keeps_nothing_that_was_typed(
    start_telegram: StartTelegram,
    backend_url: str,
    make_user: Callable[..., User],
    fake_api: FakeTelegramAPI,
    ending: str,
) -> None:
    server = await start_telegram(database_url=backend_url)
    engine: Any = server.service.storage.engine  # type: ignore[attr-defined]
    marker = new_marker()
    user = make_user(server)
    await user.say("/start")
    await walk(user, path_to_summary(marker))
    assert marker in user.texts()[-1]  # the summary, delivered
    held = await tables_holding(engine, marker)
    assert "transcript_entries.payload" in held
    # The replies kept for a retried update keep no words: the outbox row has them.
    assert "inbound_messages.reply" not in held
    # A delivered chat message keeps no body (the dispatcher erases it once sent); pending
    # ones are covered by tests/service/test_erasure.py.
    assert "outbox.payload" not in held

    if ending == "cancel":
        await user.say("/cancel")
        assert "cancelled" in user.texts()[-1]
    elif ending == "exit":
        await user.say("exit")
        assert user.texts()[-1] == "Chat closed."
    else:
        await walk(user, SUMMARY_TO_END)
        assert "Ofsted" in "\n".join(user.texts()[-2:])
    assert marker not in user.texts()[-1]

    assert await tables_holding(engine, marker) == []
    # Telegram redelivers an update it got no 200 for: the last one is answered once.
    count = len(user.texts())
    assert await server.post(user.last_update) == 200
    await server.settle()
    assert len(user.texts()) == count
