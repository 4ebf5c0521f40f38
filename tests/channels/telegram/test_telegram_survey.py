"""The survey about the chat in Telegram: two buttons under the confirmation, the survey in
the same chat, anonymous answers; over the real webhook, PTB and the fake Bot API."""

from __future__ import annotations

from tests.channels.telegram.tg_support import TelegramServer, User
from tests.fakes.telegram_api import FakeTelegramAPI


async def _send_a_report(user: User) -> None:
    await user.say("/start")
    await user.tap("start")
    await user.tap("good")
    await user.tap("dentist")
    await user.say("Qwxz Zzyq Nonexistent")
    await user.tap("self")
    await user.say("Kind and quick.")
    await user.tap("yes")  # may share with the service
    await user.tap("no")  # no contact
    await user.tap("no")  # no organisation pointed them here
    await user.tap("submit")


async def test_the_confirmation_carries_the_offer_and_the_survey_runs_in_the_chat(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    user: User = make_user(tg)
    await _send_a_report(user)
    async with tg.service.storage.unit_of_work() as uow:
        (report,) = await uow.reports.list()
    sent_id = report.conversation_id
    confirmation = user.texts()[-1]
    assert report.reference in confirmation
    assert confirmation.endswith(
        "Would you answer 3 short questions about this chat? It is optional. Your answers are "
        "kept apart from your report, without your name."
    )
    assert user.keyboard() == [f"survey_start:{sent_id}", f"survey_decline:{sent_id}"]

    await user.tap(f"survey_start:{sent_id}")
    assert user.texts()[-1].startswith("Question 1 of 3\nHow easy was it to use this chat?")
    assert user.keyboard()[:2] == ["very_easy", "easy"]
    await user.tap("neither")
    assert user.texts()[-1].startswith("Question 2 of 3\n")
    await user.say("Partly")
    assert user.texts()[-1].startswith("Question 3 of 3\n")
    await user.tap("skip")
    assert user.texts()[-1].startswith("Thank you. We have saved your answers.")

    async with tg.service.storage.unit_of_work() as uow:
        (survey,) = await uow.surveys.list()
    assert survey.channel == "telegram"
    assert survey.answers == {
        "survey_ease": "neither",
        "survey_said_all": "partly",
        "survey_improve": None,
    }
    # An old tap of the offer does not start it again; the chat then starts a new report.
    before = len(user.texts())
    await user.tap(f"survey_start:{sent_id}")
    assert user.texts()[-1].startswith("This conversation has ended")
    assert len(user.texts()) == before + 1
    await user.say("hello")
    assert user.keyboard() == ["start", "privacy", "language"]


async def test_declining_in_telegram(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    user: User = make_user(tg)
    await _send_a_report(user)
    (start, decline) = user.keyboard()
    assert decline.startswith("survey_decline:")
    await user.tap(decline)
    assert user.texts()[-1] == "All right. Thank you for using this chat."
    await user.tap(start)  # too late: declined
    assert user.texts()[-1].startswith("This conversation has ended")
    async with tg.service.storage.unit_of_work() as uow:
        assert await uow.surveys.list() == []
