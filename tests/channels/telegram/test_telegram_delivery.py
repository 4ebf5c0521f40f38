"""Replies go through the outbox: in order per chat, despite rate limits, errors and crashes."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.channels.telegram import TelegramOptions
from tests.channels.telegram.tg_support import TelegramServer, User
from tests.fakes.telegram_api import FakeTelegramAPI

WELCOME_PARTS = 4


def welcome_in_order(texts: list[str]) -> bool:
    return (
        len(texts) == WELCOME_PARTS
        and texts[0].startswith("Hello.")
        and texts[1].startswith("Tell us about care")
        and texts[2].startswith("If someone is in danger")
        and texts[3].startswith("What you tell us is kept private")
    )


async def test_a_429_storm_keeps_order_loses_nothing_and_stalls_no_other_chat(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    slow: User = make_user(tg)
    others: list[User] = [make_user(tg) for _ in range(3)]
    fake_api.fail("429", times=3, chat_id=slow.chat, retry_after=1)
    fake_api.fail("429", times=4, retry_after=1)  # whoever comes first
    await asyncio.gather(*(u.say("/start", settle=False) for u in [slow, *others]))
    await tg.settle(within=15)

    for user in [slow, *others]:
        assert welcome_in_order(user.texts()), user.texts()
    assert tg.channel.dispatcher is not None
    assert tg.channel.dispatcher.counters["rate_limited"] == 7
    assert tg.channel.dispatcher.counters["sent"] == 4 * WELCOME_PARTS
    # The chat that kept hitting the limit did not hold the others back.
    first_to_slow = fake_api.sent(slow.chat)[0].at
    quick = [u for u in others if fake_api.sent(u.chat)[-1].at < first_to_slow]
    assert quick, "every other chat waited behind the rate-limited one"


async def test_a_reply_committed_before_a_crash_is_delivered_after_restart(
    start_telegram, make_user, fake_api: FakeTelegramAPI
) -> None:
    crashed: TelegramServer = await start_telegram(
        options=TelegramOptions(run_dispatcher=False, dispatcher_poll_interval=0.05)
    )
    user: User = make_user(crashed)
    await user.say("/start", settle=False)
    assert await crashed.pending() == WELCOME_PARTS
    assert fake_api.sent(user.chat) == []
    await crashed.stop()

    restarted: TelegramServer = await start_telegram()
    await restarted.settle()
    assert welcome_in_order(fake_api.texts(user.chat))

    # Delivered once: yet another start sends nothing again.
    await restarted.stop()
    again: TelegramServer = await start_telegram()
    await asyncio.sleep(0.2)
    await again.settle()
    assert len(fake_api.texts(user.chat)) == WELCOME_PARTS


@pytest.mark.parametrize(("fault", "counter"), [("403", "blocked"), ("400", "chat_not_found")])
async def test_an_unreachable_chat_is_given_up_counted_and_logged_without_text(
    tg: TelegramServer,
    make_user,
    fake_api: FakeTelegramAPI,
    caplog: pytest.LogCaptureFixture,
    fault: str,
    counter: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot")
    gone: User = make_user(tg)
    fine: User = make_user(tg)
    fake_api.fail(fault, times=None, chat_id=gone.chat)
    await gone.say("/start")
    await fine.say("/start")
    assert tg.channel.dispatcher is not None
    assert tg.channel.dispatcher.counters[counter] == WELCOME_PARTS
    assert welcome_in_order(fine.texts())
    assert gone.texts() == []
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("bot."))
    assert counter in ours
    assert "Hello" not in ours and "danger" not in ours


async def test_network_errors_are_retried_with_backoff(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    user: User = make_user(tg)
    fake_api.fail("500", times=2)
    fake_api.fail("drop", times=1)
    await user.say("/start")
    assert welcome_in_order(user.texts())
    assert tg.channel.dispatcher is not None
    assert tg.channel.dispatcher.counters["network"] == 3


async def test_a_database_failure_answers_503_and_the_retry_is_handled_once(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.ports import StorageError

    user: User = make_user(tg)
    real = tg.service.handle_for_channel_key
    failures = iter([StorageError("down"), RuntimeError("bug")])

    async def flaky(*args, **kwargs):
        error = next(failures, None)
        if error is not None:
            raise error
        return await real(*args, **kwargs)

    monkeypatch.setattr(tg.service, "handle_for_channel_key", flaky)
    update = user.message("/start")
    assert await tg.post(update) == 503
    assert await tg.post(update) == 500
    assert await tg.post(update) == 200
    assert await tg.post(update) == 200
    await tg.settle()
    assert welcome_in_order(user.texts())
