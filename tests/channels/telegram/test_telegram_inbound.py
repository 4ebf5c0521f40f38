"""How input comes in over Telegram (real webhook, python-telegram-bot, fake Bot API):
command words, unknown commands, bugs that must not be redelivered forever, malformed
requests, NUL in button data."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from tests.channels.telegram.tg_support import SECRET, TelegramServer, User
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.pg_schema import fresh_postgres_schema

UNKNOWN = (
    "I don't know that command. You can use: back, restart, help, privacy, language, cancel, exit."
)
SORRY = "Sorry, something went wrong on our side. Your earlier answers are kept. Please try again."


async def to_provider(user: User) -> None:
    await user.say("/start")
    await user.tap("start")
    await user.tap("poor")
    await user.tap("gp")
    assert (
        user.texts()[-1].startswith("What is the name of the service") or user.language_code != "en"
    )


async def to_when(user: User) -> None:
    await to_provider(user)
    await user.say("Qwxz Zzyq Nonexistent Place")
    await user.tap("self")


async def conversation_status(tg: TelegramServer, user: User) -> str | None:
    async with tg.service.storage.unit_of_work() as uow:
        record = await uow.conversations.find_active("telegram", str(user.chat))
    return None if record is None else record.state.step


async def test_cancel_typed_at_when_cancels(tg: TelegramServer, make_user) -> None:
    user: User = make_user(tg)
    await to_when(user)
    assert await conversation_status(tg, user) == "when"
    await user.say("Cancel")
    assert "not kept anything" in user.texts()[-1]
    assert await conversation_status(tg, user) is None


async def test_help_typed_at_provider_gives_help_and_the_step_stays(
    tg: TelegramServer, make_user
) -> None:
    user: User = make_user(tg)
    await to_provider(user)
    await user.say("help")
    assert "use these commands" in user.texts()[-1]
    assert await conversation_status(tg, user) == "provider"


async def test_the_persons_own_word_works_in_welsh(tg: TelegramServer, make_user) -> None:
    user: User = make_user(tg, language_code="cy")
    await to_when(user)
    await user.say("cymorth")
    assert "canslo (" in user.texts()[-1]
    assert await conversation_status(tg, user) == "when"
    await user.say("canslo")
    assert await conversation_status(tg, user) is None


@pytest.mark.parametrize("typed", ["/stop", "/settings", "/"])
async def test_an_unknown_slash_word_is_reprompted(
    tg: TelegramServer, make_user, typed: str
) -> None:
    user: User = make_user(tg)
    await to_provider(user)
    await user.say(typed)  # asserts 200
    assert user.texts()[-1].startswith(UNKNOWN)
    assert await conversation_status(tg, user) == "provider"


def failures() -> float:
    value = REGISTRY.get_sample_value("intake_turn_failures_total", {"channel": "telegram"})
    return value or 0.0


async def test_a_bug_is_acknowledged_told_in_the_persons_language_and_the_chat_goes_on(
    tg: TelegramServer, make_user, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    user: User = make_user(tg, language_code="cy")
    await to_provider(user)
    failed_before = failures()
    real = tg.service.engine.handle
    calls = iter([RuntimeError("a bug quoting Qwxz")])

    def buggy(*args, **kwargs):  # type: ignore[no-untyped-def]
        error = next(calls, None)
        if error is not None:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(tg.service.engine, "handle", buggy)
    await user.say("Qwxz Zzyq Nonexistent Place")  # 200: Telegram will not redeliver it
    texts = user.texts()
    assert texts[-2].startswith("Mae'n ddrwg gennym")  # Welsh "sorry, something went wrong"
    assert texts[-1] == texts[-3]  # the current question again
    assert tg.channel.handler is not None and tg.channel.handler.counters["failed"] == 1
    assert failures() == failed_before + 1  # and /metrics shows it
    assert "Qwxz" not in caplog.text  # no bodies in the log
    await user.say("Qwxz Zzyq Nonexistent Place")
    assert await conversation_status(tg, user) == "relationship"


async def test_a_bug_in_a_button_press_is_acknowledged(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    user: User = make_user(tg)
    await user.say("/start")

    async def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyError("bug")

    monkeypatch.setattr(tg.service, "handle_for_channel_key", broken)
    await user.tap("start")
    assert SORRY in user.texts()
    assert fake_api.of("answerCallbackQuery")


@pytest.mark.parametrize(
    "header", [b"s3cr\xe9t", b"\xff\xfe", "s3crét".encode(), "\u0441\u0435\u043a".encode()]
)
async def test_a_non_ascii_secret_is_401(tg: TelegramServer, make_user, header: bytes) -> None:
    user: User = make_user(tg)
    async with tg.session.post(
        f"{tg.base_url}/telegram/webhook",
        json=user.message("/start"),
        headers={"X-Telegram-Bot-Api-Secret-Token": header.decode("latin-1")},
    ) as response:
        assert response.status == 401


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe{}",
        b"[]",
        b"42",
        b'"update"',
        b"null",
        b'{"update_id": 1, "message": "not an object"}',
        b'{"update_id": 1, "message": {"chat": 5}}',
        b'{"update_id": 1, "callback_query": []}',
        b'{"update_id": "1"}',
    ],
)
async def test_a_malformed_update_is_400(
    tg: TelegramServer, fake_api: FakeTelegramAPI, body: bytes
) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
    async with tg.session.post(
        f"{tg.base_url}/telegram/webhook", data=body, headers=headers
    ) as response:
        assert response.status == 400
    assert fake_api.sent() == []


async def _nul_in_callback_data(tg: TelegramServer, user: User) -> None:
    await user.say("/start")
    await user.tap("start")
    message_id = fake_message_id(user)
    assert await tg.post(user.callback("po\x00or", message_id)) == 200
    await tg.settle()
    assert user.texts()[-1] == "What type of service was it?"
    assert await tg.post(user.callback("\x00", message_id)) == 200
    assert await tg.post(user.message("Care\x00 home")) == 200
    await tg.settle()


def fake_message_id(user: User) -> int:
    return int(user.fake.sent(user.chat)[-1].result["message_id"])


async def test_nul_in_callback_data_gets_a_normal_answer(tg: TelegramServer, make_user) -> None:
    await _nul_in_callback_data(tg, make_user(tg))


@pytest.mark.postgres
async def test_nul_in_callback_data_gets_a_normal_answer_on_postgres(
    start_telegram, make_user
) -> None:
    async with fresh_postgres_schema("intake_tg_inbound") as url:
        tg: TelegramServer = await start_telegram(database_url=url)
        try:
            await _nul_in_callback_data(tg, make_user(tg))
        finally:
            await tg.stop()


@pytest.mark.postgres
async def test_data_the_database_refuses_is_a_bug_not_an_outage(
    start_telegram, make_user, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should NUL ever slip past the cleaning, PostgreSQL refuses the text on every attempt:
    that is acknowledged and told to the person, never a 503 redelivered forever."""
    import bot.intake.service

    monkeypatch.setattr(bot.intake.service, "clean_inbound", lambda inbound: inbound)
    async with fresh_postgres_schema("intake_tg_refused") as url:
        tg: TelegramServer = await start_telegram(database_url=url)
        try:
            user: User = make_user(tg)
            await to_provider(user)
            assert await tg.post(user.message("/help\x00")) == 200
            await user.say("Oak\x00 House")  # asserts 200
            assert SORRY in user.texts()
            assert tg.channel.handler is not None and tg.channel.handler.counters["failed"] >= 1
            await user.say("Qwxz Zzyq Nonexistent Place")
            assert await conversation_status(tg, user) == "relationship"
        finally:
            await tg.stop()
