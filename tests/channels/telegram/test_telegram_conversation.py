"""Whole conversations over the real webhook, python-telegram-bot and a fake Bot API."""

from __future__ import annotations

from dataclasses import replace

from bot.ports import DirectoryLocation
from tests.channels.telegram.tg_support import (
    FAST,
    TelegramServer,
    User,
    buttons,
    expected_deliveries,
    is_welcome,
    paragraphs,
)
from tests.fakes.telegram_api import FakeTelegramAPI


async def stored_reports(tg: TelegramServer) -> list:
    async with tg.service.storage.unit_of_work() as uow:
        return await uow.reports.list()


async def test_a_whole_report_by_buttons_and_typed_text(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    user: User = make_user(tg)
    await user.say("/start")
    assert len(user.texts()) == 1  # the five welcome messages as one
    assert is_welcome(user.texts()[0])
    assert user.keyboard() == ["start", "privacy", "language"]

    await user.tap("start")
    assert user.texts()[-1] == "Was the care poor, good, or both?"
    await user.say("Poor")  # a typed label
    assert user.texts()[-1] == "What type of service was it?"
    await user.say("2")  # a typed number: the second choice, care home
    assert user.texts()[-1].startswith("What is the name of the service")
    await user.say("Castle View Lancaster")
    assert "1-900000003" in user.keyboard()
    await user.tap("1-900000003")
    assert user.texts()[-1] == "How do you know about this care?"
    await user.tap("friend_family")
    await user.say("Last week")
    await user.tap("skip")
    account = "They left <b>my mum</b> *alone* for hours & [nobody] came."
    await user.say(account)
    # One message: what sharing means, that they can say no, then the question with its keys.
    asked = user.texts()[-1]
    assert asked.startswith("Sharing your feedback means") and "You can say no." in asked
    assert asked.endswith("Can we share your feedback with the service?")
    assert user.keyboard() == ["yes", "no"]
    await user.tap("yes")
    await user.tap("no")
    await user.say("Neither")
    await user.tap("not_yet")
    await user.tap("continue")
    await user.tap("no")
    assert user.texts()[-1].endswith("another organisation suggest that you tell us?")
    await user.tap("yes")
    await user.say("Age UK Lancashire")
    summary = "\n".join(user.texts()[-3:])
    assert "Which organisation: Age UK Lancashire" in summary
    assert account in summary  # verbatim: sent without a parse mode, nothing escaped
    await user.tap("submit")

    reports = await stored_reports(tg)
    assert len(reports) == 1
    report = reports[0]
    assert report.channel == "telegram"
    data = report.data
    assert data["experience"] == "poor"
    assert data["service_type"] == "care_home"
    assert data["location_id"] == "1-900000003"
    assert data["relationship"] == "friend_family"
    assert data["when"] == "Last week"
    assert data["service_part"] is None
    assert data["what_happened"] == account
    assert data["risk"] == "no"
    assert data["authorities"] == "neither"
    assert data["complaint"] == "not_yet"
    assert data["contact"] is None
    assert data["share_with_service"] == "yes"
    assert (data["referral"], data["referral_name"]) == ("yes", "Age UK Lancashire")
    assert any(report.reference in text for text in user.texts()[-3:])

    sent = fake_api.sent(user.chat)
    # Each turn's reply arrived as one message: the stored bot messages of that turn, joined
    # in order, with their buttons; nothing else and nothing missing.
    expected = await expected_deliveries(tg, report.conversation_id)
    assert len(expected) == 19  # /start and the 18 answers
    assert [(call.params["text"], buttons(call.params)) for call in sent] == expected
    assert all("parse_mode" not in call.params for call in sent)
    # Every tap was answered, and its message's keyboard removed beside the tap's reply.
    taps = 11
    assert len(fake_api.of("answerCallbackQuery")) == taps
    edits = fake_api.of("editMessageReplyMarkup", chat_id=user.chat)
    assert len(edits) == taps
    with_buttons = {c.result["message_id"] for c in sent if "reply_markup" in c.params}
    assert all(int(edit.params["message_id"]) in with_buttons for edit in edits)
    # Short labels two to a row, long ones alone.
    experience = next(c for c in sent if c.params["text"] == "Was the care poor, good, or both?")
    rows = experience.params["reply_markup"]["inline_keyboard"]
    assert [[b["callback_data"] for b in row] for row in rows] == [["poor", "good"], ["mixed"]]
    service_types = next(c for c in sent if c.params["text"] == "What type of service was it?")
    assert ["gp"] in [
        [b["callback_data"] for b in row]
        for row in service_types.params["reply_markup"]["inline_keyboard"]
    ]


async def test_a_repeated_update_is_handled_once(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    user: User = make_user(tg)
    update = user.message("/start")
    assert await tg.post(update) == 200
    assert await tg.post(update) == 200
    await tg.settle()
    assert len(user.texts()) == 1 and is_welcome(user.texts()[0])
    await user.tap("start")
    again = user.last_update
    assert await tg.post(again) == 200
    await tg.settle()
    assert user.texts().count("Was the care poor, good, or both?") == 1


async def test_a_stale_button_reprompts_and_the_conversation_goes_on(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    user: User = make_user(tg)
    await user.say("/start")
    await user.tap("start")
    await user.tap("poor")
    assert user.texts()[-1] == "What type of service was it?"
    count = len(user.texts())
    await user.tap("good")  # the experience question's button, tapped again
    assert len(user.texts()) == count + 1  # the explanation and the question, one message
    stale = paragraphs(user.texts()[-1])
    assert stale[0].startswith("That button was for an earlier question")
    assert stale[-1] == "What type of service was it?"
    assert "hospital" in user.keyboard()
    await user.tap("hospital")
    assert user.texts()[-1].startswith("What is the name of the service")


async def test_commands_and_restart_after_the_end(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    user: User = make_user(tg)
    await user.say("/start")
    await user.tap("start")
    await user.tap("poor")
    await user.say("/back")
    assert user.texts()[-1] == "Was the care poor, good, or both?"
    await user.say("/start")  # active conversation: the current question again
    assert user.texts()[-1] == "Was the care poor, good, or both?"
    await user.say("/cancel")
    assert "cancelled" in user.texts()[-1]
    count = len(user.texts())
    await user.say("/start")  # the old one is over: a new conversation
    assert user.texts()[count].startswith("Hello.")


async def test_a_deep_link_preselects_a_location(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    await tg.service.storage.directory.replace_all(
        [
            DirectoryLocation(
                "1-555000001",
                "Willow Court Care Home",
                address="1 Willow Way, York",
                postcode="YO1 7ZZ",
                service_types=("Residential homes",),
            ),
            DirectoryLocation(
                "1-555000002",
                "Birch Surgery",
                address="2 Birch Road, York",
                postcode="YO1 8ZZ",
                service_types=("Doctors/GPs",),
            ),
        ]
    )
    await tg.service.directory.refresh(force=True)  # workers notice within a minute
    user: User = make_user(tg)
    await user.say("/start 1-555000001")
    assert user.texts()[0].startswith("Hello.")
    await user.tap("start")
    await user.tap("poor")
    await user.tap("care_home")
    assert any("Is this the service" in t for t in user.texts()[-3:])
    assert "1-555000001" in user.keyboard()
    await user.tap("1-555000001")
    assert user.texts()[-1] == "How do you know about this care?"


async def test_a_deep_link_payload_that_is_not_valid_is_ignored(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    user: User = make_user(tg)
    await user.say("/start ../../etc")
    assert user.texts()[0].startswith("Hello.")


async def test_a_group_gets_one_explanation_and_nothing_is_stored(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    user: User = make_user(tg, chat_type="group", chat_id=-100123)
    await user.say("/start")
    await user.say("hello everyone")
    await fake_api.wait_sent(1, chat_id=-100123)
    await tg.settle()
    texts = user.texts()
    assert len(texts) == 1
    assert "private chat" in texts[0]
    assert "https://t.me/care_feedback_test_bot?start=" in texts[0]
    async with tg.service.storage.unit_of_work() as uow:
        assert await uow.conversations.find_active("telegram", "-100123") is None


async def test_a_photo_is_explained_and_the_question_kept(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    user: User = make_user(tg)
    await user.say("/start")
    await user.tap("start")
    before = len(user.texts())
    photo = [{"file_id": "AgAD", "file_unique_id": "u1", "width": 90, "height": 90}]
    assert await tg.post(user.message(photo=photo)) == 200
    await fake_api.wait_sent(before + 2, chat_id=user.chat)
    await tg.settle()
    assert user.texts()[before:] == [
        "I can only read typed text. Please type your answer.",
        "Was the care poor, good, or both?",
    ]
    assert user.keyboard() == ["poor", "good", "mixed"]
    async with tg.service.storage.unit_of_work() as uow:
        record = await uow.conversations.find_active("telegram", str(user.chat))
    assert record is not None and record.state.step == "experience"
    await user.tap("poor")
    assert user.texts()[-1] == "What type of service was it?"


async def test_edits_and_membership_changes_are_ignored(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    user: User = make_user(tg)
    await user.say("/start")
    edited = user.message("changed my mind")
    edited["edited_message"] = edited.pop("message")
    edited["edited_message"]["edit_date"] = edited["edited_message"]["date"]
    assert await tg.post(edited) == 200
    blocked = {
        "update_id": edited["update_id"] + 1,
        "my_chat_member": {
            "chat": {"id": user.chat, "type": "private", "first_name": "Sam"},
            "from": {"id": user.id, "is_bot": False, "first_name": "Sam"},
            "date": 1,
            "old_chat_member": {
                "user": {"id": 123, "is_bot": True, "first_name": "B"},
                "status": "member",
            },
            "new_chat_member": {
                "user": {"id": 123, "is_bot": True, "first_name": "B"},
                "status": "kicked",
                "until_date": 0,
            },
        },
    }
    assert await tg.post(blocked) == 200
    await tg.settle()
    assert len(user.texts()) == 1 and is_welcome(user.texts()[0])


async def test_a_long_message_is_split_with_the_keyboard_last(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    user: User = make_user(tg)
    await user.say("/start")
    await user.tap("start")
    await user.tap("poor")
    await user.tap("hospital")
    await user.say("Nowhere at all")
    await user.tap("none") if "none" in user.keyboard() else None
    await user.tap("self")
    await user.tap("skip")
    await user.tap("skip")
    account = "\n\n".join(f"Paragraph {i}. " + "word " * 150 for i in range(12))
    await user.say(account)
    await user.tap("yes")  # may share with the service
    await user.tap("no")
    await user.tap("neither")
    await user.tap("not_yet")
    await user.tap("continue")
    await user.tap("no")  # Mental Health Act (hospital)
    await user.tap("no")  # contact
    await user.tap("no")  # no organisation pointed them here
    summary_calls = [c for c in fake_api.sent(user.chat) if "Paragraph" in c.params["text"]]
    assert len(summary_calls) >= 2
    assert all(len(c.params["text"]) <= 4096 for c in summary_calls)
    assert all("reply_markup" not in c.params for c in summary_calls[:-1])
    assert buttons(fake_api.sent(user.chat)[-1].params)[:1] == ["submit"]


async def test_button_taps_spend_the_send_limit_only_on_replies(
    start_telegram, make_user, fake_api: FakeTelegramAPI
) -> None:
    """Telegram's ~30/s bulk limit counts messages sent. With a budget of exactly three
    messages and no refill in the test's lifetime, the welcome and the replies to two taps
    must all go out: if answering a tap or removing its keyboard spent the budget too, a reply
    would wait (about a thousand seconds) and the test would time out."""
    tg = await start_telegram(options=replace(FAST, rate_per_second=0.001, rate_burst=3.0))
    user = make_user(tg)
    await user.say("/start")
    await user.tap("start")
    await user.tap("poor")
    assert len(fake_api.sent(user.chat)) == 3
    assert [c.method for c in fake_api.calls].count("editMessageReplyMarkup") >= 1
