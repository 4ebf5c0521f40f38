"""Replies go through the outbox: in order per chat, despite rate limits, errors and crashes."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.channels.telegram import TelegramOptions
from bot.channels.telegram.render import TEXT_LIMIT, utf16_len
from bot.ports import OutboxMessage
from tests.channels.telegram.tg_support import (
    TelegramServer,
    User,
    buttons,
    expected_deliveries,
    is_welcome,
)
from tests.fakes.telegram_api import FakeTelegramAPI

#: The welcome is four bot messages, sent as one Telegram message.
WELCOME_PARTS = 1


def welcome_in_order(texts: list[str]) -> bool:
    return len(texts) == WELCOME_PARTS and is_welcome(texts[0])


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


async def test_a_taps_buttons_go_with_its_reply_even_after_a_crash(
    start_telegram, make_user, fake_api: FakeTelegramAPI
) -> None:
    """The tapped message's keyboard is removed by the reply's delivery, from the reply's
    outbox row: not by a call of the webhook's own after the commit, which a crash loses
    and which, above the send limit, ran ahead of the reply it belongs with."""
    first: TelegramServer = await start_telegram()
    user: User = make_user(first)
    await user.say("/start")
    welcome = fake_api.sent(user.chat)[0].result["message_id"]
    await first.stop()

    crashed: TelegramServer = await start_telegram(
        options=TelegramOptions(run_dispatcher=False, dispatcher_poll_interval=0.05)
    )
    user.server = crashed
    await user.tap("start", settle=False)
    handler = crashed.channel.handler
    assert handler is not None and not handler._background  # nothing runs after the 200
    assert await crashed.pending() == 1
    assert fake_api.of("editMessageReplyMarkup", chat_id=user.chat) == []
    await crashed.stop()

    restarted: TelegramServer = await start_telegram()
    await restarted.settle()
    assert user.texts()[-1] == "Was the care poor, good, or both?"
    edits = fake_api.of("editMessageReplyMarkup", chat_id=user.chat)
    assert [int(edit.params["message_id"]) for edit in edits] == [welcome]
    assert "reply_markup" not in edits[0].params  # no markup: the keyboard goes


async def test_a_keyboard_edit_refused_does_not_hold_back_the_reply(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    user: User = make_user(tg)
    await user.say("/start")
    fake_api.fail("400", times=None, method="editMessageReplyMarkup")
    await user.tap("start")
    assert user.texts()[-1] == "Was the care poor, good, or both?"
    assert fake_api.of("editMessageReplyMarkup", ok_only=False)[0].outcome == "400"
    assert tg.channel.dispatcher is not None
    assert tg.channel.dispatcher.counters["sent"] == 2
    assert tg.channel.dispatcher.counters["chat_not_found"] == 0


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
    assert await tg.post(update) == 503  # the database: retried
    assert await tg.post(update) == 200  # a bug: not retried forever; the person is told
    await tg.settle()
    assert user.texts() == [
        "Sorry, something went wrong on our side. Your earlier answers are kept. Please try again."
    ]
    assert tg.channel.handler is not None and tg.channel.handler.counters["failed"] == 1
    assert await tg.post(update) == 200  # nothing was stored for it: handled now
    assert await tg.post(update) == 200  # and only once
    await tg.settle()
    assert welcome_in_order(user.texts()[1:])


async def test_a_turns_several_messages_arrive_as_one_send_message(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    user: User = make_user(tg)
    await user.say("/start")
    async with tg.service.storage.unit_of_work() as uow:
        record = await uow.conversations.find_active("telegram", str(user.chat))
    assert record is not None
    (welcome,) = await expected_deliveries(tg, record.id)
    assert len(welcome[0].split("\n\n")) == 5  # five stored bot messages
    sent = fake_api.sent(user.chat)
    assert len(sent) == 1
    assert (sent[0].params["text"], buttons(sent[0].params)) == welcome
    assert welcome[1] == ["start", "privacy", "language"]
    assert tg.channel.dispatcher is not None
    assert tg.channel.dispatcher.counters["sent"] == 1


def _message(text: str, *choices: str) -> dict:
    return {
        "text": text,
        "choices": [{"id": c, "label": c.title()} for c in choices],
        "input": "choice" if choices else "none",
    }


async def _write_rows(tg: TelegramServer, chat: int, payloads: list[dict]) -> None:
    async with tg.service.storage.unit_of_work() as uow:
        await uow.outbox.add(
            [
                OutboxMessage("telegram.send", str(chat), {"chat_id": str(chat), **payload})
                for payload in payloads
            ]
        )
        await uow.commit()
    assert tg.channel.dispatcher is not None
    tg.channel.dispatcher.wake()
    await tg.settle()


async def test_an_over_long_reply_splits_with_the_keyboard_on_the_last_part(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    user: User = make_user(tg)
    first = "First. " + "word " * 700  # about 3,500 characters each
    second = "Second. " + "word " * 700
    third = "Third, with buttons?"
    await _write_rows(
        tg,
        user.chat,
        [{"messages": [_message(first), _message(second), _message(third, "yes", "no")]}],
    )
    sent = fake_api.sent(user.chat)
    assert len(sent) == 2
    assert all(utf16_len(c.params["text"]) <= TEXT_LIMIT for c in sent)
    assert sent[0].params["text"] == first.strip()  # cut between the messages
    assert sent[1].params["text"] == f"{second.strip()}\n\n{third}"
    assert "reply_markup" not in sent[0].params
    assert buttons(sent[1].params) == ["yes", "no"]
    assert all("parse_mode" not in c.params for c in sent)


async def test_earlier_buttons_are_kept_merged_in_order(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    user: User = make_user(tg)
    await _write_rows(
        tg,
        user.chat,
        [{"messages": [_message("Pick one.", "a", "b"), _message("Or these.", "c", "a")]}],
    )
    (call,) = fake_api.sent(user.chat)
    assert call.params["text"] == "Pick one.\n\nOr these."
    assert buttons(call.params) == ["a", "b", "c"]


async def test_rows_of_the_old_one_message_shape_are_still_delivered_in_order(
    start_telegram, make_user, fake_api: FakeTelegramAPI
) -> None:
    """Rows written before replies were joined (payload "message") may be pending at a deploy."""
    before: TelegramServer = await start_telegram(
        options=TelegramOptions(run_dispatcher=False, dispatcher_poll_interval=0.05)
    )
    user: User = make_user(before)
    async with before.service.storage.unit_of_work() as uow:
        await uow.outbox.add(
            [
                OutboxMessage(
                    "telegram.send",
                    str(user.chat),
                    {
                        "chat_id": str(user.chat),
                        "conversation_id": "old",
                        "locale": "en",
                        "rtl": False,
                        "message": message,
                    },
                )
                for message in (_message("Old one."), _message("Old two?", "yes", "no"))
            ]
        )
        await uow.commit()
    assert await before.pending() == 2
    await before.stop()

    after: TelegramServer = await start_telegram()
    await after.settle()
    await _write_rows(after, user.chat, [{"messages": [_message("New."), _message("Q?", "ok")]}])
    sent = fake_api.sent(user.chat)
    assert [(c.params["text"], buttons(c.params)) for c in sent] == [
        ("Old one.", []),
        ("Old two?", ["yes", "no"]),
        ("New.\n\nQ?", ["ok"]),
    ]
    assert after.channel.dispatcher is not None
    assert after.channel.dispatcher.counters["sent"] == 3
    assert after.channel.dispatcher.counters["malformed_payload"] == 0
