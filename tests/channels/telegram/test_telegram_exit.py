"""The exit word in a Telegram chat, over the real webhook and python-telegram-bot against the
fake Bot API: the conversation ends at once and keeps nothing, and the chat's messages (the
person's and ours) are deleted through the outbox with deleteMessages, at most 100 ids a call,
retried when Telegram fails and never sent twice. The ids themselves are then forgotten."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.intake.exit_help import EXIT_HELP
from bot.ports import ChatMessageIds
from storage.models import chat_messages, outbox
from tests.channels.telegram.conftest import StartTelegram
from tests.channels.telegram.tg_support import TelegramServer, User
from tests.fakes.telegram_api import FakeTelegramAPI

CLOSED = "Chat closed."


async def typed(user: User, text: str) -> int:
    """Say `text`; the chat's id of the person's message."""
    await user.say(text)
    return int(user.last_update["message"]["message_id"])


async def kept_ids(server: TelegramServer, chat: int) -> list[int]:
    engine: Any = server.service.storage.engine  # type: ignore[attr-defined]
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(chat_messages.c.message_id).where(chat_messages.c.channel_key == str(chat))
        )
        return [int(r) for r in rows.scalars()]


async def test_exit_deletes_the_chats_messages_and_keeps_nothing(
    start_telegram: StartTelegram, make_user: Callable[..., User], fake_api: FakeTelegramAPI
) -> None:
    server = await start_telegram()
    user = make_user(server)
    mine = [await typed(user, "/start")]
    await user.tap("start")
    await user.tap("poor")
    await user.tap("gp")
    mine.append(await typed(user, "Qwxz Zzyq Nonexistent Place"))
    ours = [c.result["message_id"] for c in fake_api.sent(user.chat)]
    assert sorted(await kept_ids(server, user.chat)) == sorted(mine + ours)

    mine.append(await typed(user, "exit"))
    # At once: no question first, and a reply that says nothing of what the chat was about.
    assert user.texts()[-1] == CLOSED
    deleted = fake_api.deleted[user.chat]
    assert sorted(deleted) == sorted(mine + ours)
    async with server.service.storage.unit_of_work() as uow:
        assert await uow.conversations.find_active("telegram", str(user.chat)) is None
    # Only the neutral reply's id is left, for a later exit (or the 48-hour purge).
    closed_id = fake_api.sent(user.chat)[-1].result["message_id"]
    assert await kept_ids(server, user.chat) == [closed_id]


async def test_exit_also_deletes_a_photo_and_our_note_about_it(
    start_telegram: StartTelegram, make_user: Callable[..., User], fake_api: FakeTelegramAPI
) -> None:
    """A photo (of an injury, a letter...) says as much as words: the bot cannot read it, but
    the exit word must delete it, and the note we sent about it, with the rest."""
    server = await start_telegram()
    user = make_user(server)
    mine = [await typed(user, "/start")]
    await user.tap("start")
    photo = [{"file_id": "AgAD", "file_unique_id": "u1", "width": 90, "height": 90}]
    before = len(fake_api.sent(user.chat))
    assert await server.post(user.message(photo=photo)) == 200
    mine.append(int(user.last_update["message"]["message_id"]))
    await fake_api.wait_sent(before + 2, chat_id=user.chat)  # the note, the question again
    await server.settle()
    ours = [c.result["message_id"] for c in fake_api.sent(user.chat)]
    mine.append(await typed(user, "exit"))
    assert user.texts()[-1] == CLOSED
    assert sorted(fake_api.deleted[user.chat]) == sorted(mine + ours)


async def test_deletes_go_through_the_outbox_at_most_100_ids_a_call(
    start_telegram: StartTelegram, make_user: Callable[..., User], fake_api: FakeTelegramAPI
) -> None:
    server = await start_telegram()
    user = make_user(server)
    await user.say("/start")
    many = tuple(range(900_001, 900_251))
    async with server.service.storage.unit_of_work() as uow:
        ids = ChatMessageIds("telegram", str(user.chat), many, None)
        await uow.chat_messages.add(ids, at=datetime.now(UTC))
        await uow.commit()
    # Telegram fails the first delete once: the outbox retries it, and sends nothing twice.
    fake_api.fail("500", method="deleteMessages", times=1)
    await user.say("/exit")
    await fake_api.wait_for(
        lambda: len(fake_api.of("deleteMessages", chat_id=user.chat)) == 3, what="3 deletes"
    )
    await server.settle()
    calls = fake_api.of("deleteMessages", chat_id=user.chat)
    # 250 kept here, and the chat's own three: "/start", the welcome, "/exit".
    assert [len(c.params["message_ids"]) for c in calls] == [100, 100, 53]
    assert len(fake_api.of("deleteMessages", ok_only=False)) == 4  # one failure, retried
    assert set(many) <= set(fake_api.deleted[user.chat])
    assert len(fake_api.deleted[user.chat]) == len(set(fake_api.deleted[user.chat]))
    engine: Any = server.service.storage.engine  # type: ignore[attr-defined]
    async with engine.connect() as connection:
        rows = (await connection.execute(select(outbox.c.payload, outbox.c.status))).all()
    # Delivered rows keep no ids; none failed for good.
    assert all(row.status == "done" for row in rows)
    assert not any("delete" in row.payload for row in rows)


async def test_a_delete_telegram_refuses_is_a_visible_dead_letter(
    start_telegram: StartTelegram, make_user: Callable[..., User], fake_api: FakeTelegramAPI
) -> None:
    server = await start_telegram()
    user = make_user(server)
    await user.say("/start")
    fake_api.fail("400", method="deleteMessages", times=None)
    await user.say("exit")
    await server.settle()
    async with server.service.storage.unit_of_work() as uow:
        failed = await uow.outbox.list(status="failed")
    assert [m.last_error for m in failed] == ["chat_not_found"]


async def test_help_says_what_exit_does_and_does_not_hide_in_telegram(
    start_telegram: StartTelegram, make_user: Callable[..., User]
) -> None:
    server = await start_telegram()
    user = make_user(server)
    await user.say("/start")
    await user.say("help")
    said = user.texts()[-1]
    assert "To leave at once, type exit." in said
    assert "48 hours" in said and "notifications already shown" in said
    assert EXIT_HELP["telegram"].msgid.split(" We close")[0].replace("{exit}", "exit") in said


async def test_ids_older_than_48_hours_are_purged(
    start_telegram: StartTelegram, make_user: Callable[..., User]
) -> None:
    server = await start_telegram()
    user = make_user(server)
    await user.say("/start")
    old = datetime.now(UTC) - timedelta(hours=49)
    async with server.service.storage.unit_of_work() as uow:
        ids = ChatMessageIds("telegram", str(user.chat), (7, 8), None)
        await uow.chat_messages.add(ids, at=old)
        await uow.commit()
    before = await kept_ids(server, user.chat)
    assert await server.service.purge_chat_messages() == 2
    assert sorted(await kept_ids(server, user.chat)) == sorted(set(before) - {7, 8})


async def test_exit_after_the_conversation_ended_still_leaves_and_deletes(
    start_telegram: StartTelegram, make_user: Callable[..., User], fake_api: FakeTelegramAPI
) -> None:
    """No greeting for the exit word in a chat with no conversation going: it deletes what is
    kept (here the first exit's "Chat closed.") and says only "Chat closed." again."""
    server = await start_telegram()
    user = make_user(server)
    await user.say("/start")
    await user.say("exit")
    first_closed = fake_api.sent(user.chat)[-1].result["message_id"]
    sent_before = len(fake_api.sent(user.chat))
    second = await typed(user, "exit")
    assert len(fake_api.sent(user.chat)) == sent_before + 1
    assert user.texts()[-1] == CLOSED
    assert {first_closed, second} <= set(fake_api.deleted[user.chat])
    async with server.service.storage.unit_of_work() as uow:
        assert await uow.conversations.find_active("telegram", str(user.chat)) is None
