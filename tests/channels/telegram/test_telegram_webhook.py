"""The webhook's guard, startup registration, configuration, and polling mode."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot import jsonenc
from bot.app import build_app
from bot.channels.telegram import TelegramOptions
from bot.config import ConfigError, Settings
from tests.channels.telegram.tg_support import TelegramServer, User
from tests.fakes.telegram_api import FakeTelegramAPI


async def no_conversation(tg: TelegramServer, user: User) -> bool:
    async with tg.service.storage.unit_of_work() as uow:
        return await uow.conversations.find_active("telegram", str(user.chat)) is None


@pytest.mark.parametrize(("secret", "status"), [(None, 401), ("wrong", 403), ("s3cre", 403)])
async def test_a_missing_or_wrong_secret_is_refused_and_nothing_happens(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI, secret: str | None, status: int
) -> None:
    user: User = make_user(tg)
    assert await tg.post(user.message("/start"), secret=secret) == status
    await tg.settle()
    assert fake_api.sent() == []
    assert await no_conversation(tg, user)


async def test_oversized_and_malformed_bodies_are_refused(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    user: User = make_user(tg)
    huge = user.message("x" * 300_000)  # over INTAKE_MAX_BODY_BYTES (256 KiB)
    assert await tg.post(huge) == 413
    headers = {"X-Telegram-Bot-Api-Secret-Token": "s3cret", "Content-Type": "application/json"}
    for body in (b"{not json", b"[]", b'{"no_update_id": 1}'):
        async with tg.session.post(
            f"{tg.base_url}/telegram/webhook", data=body, headers=headers
        ) as response:
            assert response.status == 400
    assert fake_api.sent() == []


async def test_startup_registers_the_webhook_and_the_commands(
    start_telegram, fake_api: FakeTelegramAPI
) -> None:
    await start_telegram(telegram_public_url="https://intake.example.org/")
    (call,) = fake_api.of("setWebhook")
    assert call.params["url"] == "https://intake.example.org/telegram/webhook"
    assert call.params["secret_token"] == "s3cret"
    assert call.params["allowed_updates"] == ["message", "callback_query", "my_chat_member"]
    assert call.params["drop_pending_updates"] is False
    default_menu = [c for c in fake_api.of("setMyCommands") if "language_code" not in c.params]
    assert [c["command"] for c in default_menu[0].params["commands"]] == [
        "start",
        "back",
        "restart",
        "help",
        "privacy",
        "language",
        "cancel",
        "exit",
    ]


def test_webhook_mode_without_a_secret_refuses_to_start(tg_settings: Settings) -> None:
    with pytest.raises(ConfigError, match="INTAKE_TELEGRAM_WEBHOOK_SECRET"):
        build_app(replace(tg_settings, telegram_webhook_secret=None))
    with pytest.raises(ConfigError, match="INTAKE_TELEGRAM_WEBHOOK_SECRET"):
        build_app(replace(tg_settings, telegram_webhook_secret="has spaces"))


async def test_polling_feeds_the_same_handler_and_advances_the_offset(
    start_telegram, make_user, fake_api: FakeTelegramAPI
) -> None:
    options = TelegramOptions(dispatcher_poll_interval=0.05, polling_timeout=1)
    tg: TelegramServer = await start_telegram(
        options=options, telegram_mode="polling", telegram_webhook_secret=None
    )
    user: User = make_user(tg)
    first = user.message("/start")
    await fake_api.push_update(first)
    await fake_api.push_update(first)  # a repeat is harmless
    await fake_api.wait_sent(1, chat_id=user.chat)
    await fake_api.wait_for(
        lambda: any(
            c.params.get("offset") == first["update_id"] + 1 for c in fake_api.of("getUpdates")
        ),
        what="the offset to move on",
    )
    await tg.settle()
    assert len(user.texts()) == 1
    assert fake_api.of("deleteWebhook")[0].params.get("drop_pending_updates") is False
    # A button press: no webhook response to answer it in, so the answer is a call.
    tap = user.callback("start", fake_api.sent(user.chat)[-1].result["message_id"])
    await fake_api.push_update(tap)
    await fake_api.wait_for(
        lambda: (
            [c.params.get("callback_query_id") for c in fake_api.of("answerCallbackQuery")]
            == [tap["callback_query"]["id"]]
        ),
        what="the button press answered",
    )
    # No webhook route in polling mode.
    assert await tg.post(user.message("/start")) in (404, 405)


async def test_a_button_press_is_answered_in_the_webhooks_response(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    """Telegram performs a method named in a webhook's 200: the answer to a button press goes
    there, and the server makes no answerCallbackQuery call of its own."""
    user: User = make_user(tg)
    await user.say("/start")
    tap = user.callback("start", fake_api.sent(user.chat)[-1].result["message_id"])
    headers = {"X-Telegram-Bot-Api-Secret-Token": "s3cret"}
    async with tg.session.post(
        f"{tg.base_url}/telegram/webhook", json=tap, headers=headers
    ) as response:
        assert response.status == 200
        assert await response.json() == {
            "method": "answerCallbackQuery",
            "callback_query_id": tap["callback_query"]["id"],
        }
    await tg.settle()
    assert fake_api.of("answerCallbackQuery") == []
    assert user.texts()[-1] == "Was the care poor, good, or both?"  # the turn ran
    # An update that is not a button press is acknowledged as before.
    assert await tg.post(user.message("Poor")) == 200


async def test_the_webhooks_answers_are_encoded_by_jsonenc(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    """The 200 (a button's answer, or the plain acknowledgement) and the refusals are
    `bot.jsonenc`'s compact UTF-8 JSON, as the web channel's answers are, not the standard
    library's (the same JSON, encoded several times faster)."""
    user: User = make_user(tg)
    headers = {"X-Telegram-Bot-Api-Secret-Token": "s3cret"}
    url = f"{tg.base_url}/telegram/webhook"
    async with tg.session.post(url, json=user.message("/start"), headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "application/json" and response.charset == "utf-8"
        assert await response.read() == b'{"ok":true}'
    await tg.settle()
    tap = user.callback("start", fake_api.sent(user.chat)[-1].result["message_id"])
    async with tg.session.post(url, json=tap, headers=headers) as response:
        assert await response.read() == jsonenc.dumps(
            {"method": "answerCallbackQuery", "callback_query_id": tap["callback_query"]["id"]}
        )
    async with tg.session.post(url, data=b"[]", headers=headers) as response:
        assert response.status == 400
        assert await response.read() == jsonenc.dumps(
            {"error": {"code": "malformed", "message": "not a Telegram update"}}
        )
