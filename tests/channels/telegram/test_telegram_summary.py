"""The summary in Telegram: numbered rows, and "change N" (in the person's words too) to the
question, whose current answer is quoted so it can be copied. Over the real webhook,
python-telegram-bot and the fake Bot API; sent without a parse mode, so nothing is escaped
and nothing typed can be read as markup."""

from __future__ import annotations

from tests.channels.telegram.tg_support import TelegramServer, User
from tests.fakes.telegram_api import FakeTelegramAPI

ACCOUNT = "They left <b>my mum</b> *alone* for hours & [nobody](https://x.test) came."


async def to_summary(user: User) -> str:
    await user.say("/start")
    await user.tap("start")
    await user.tap("poor")
    await user.tap("care_home")
    await user.say("Qwxz Nowhere House")
    await user.tap("friend_family")
    await user.tap("skip")  # when
    await user.say("Ward 3")
    await user.say(ACCOUNT)
    await user.tap("yes")  # may share with the service
    await user.tap("no")
    await user.tap("neither")
    await user.tap("not_yet")
    await user.tap("continue")
    await user.tap("no")
    await user.tap("no")  # no organisation pointed them here
    assert user.keyboard() == ["submit", "edit", "restart"]
    return user.texts()[-1]


async def test_change_n_in_polish_quotes_the_answer_and_comes_back(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    user: User = make_user(tg, language_code="pl")
    summary = await to_summary(user)
    lines = summary.split("\n")
    assert "1. Rodzaj doświadczenia: Zła" in lines
    assert "5. Kiedy: Nie podano" in lines
    assert f"7. Co się stało: {ACCOUNT}" in lines  # verbatim
    assert (
        lines[-1] == "Aby zmienić odpowiedź, należy wpisać zmień i jej numer, na przykład: zmień 1"
    )

    await user.say("Zmień 7")
    question = user.texts()[-1]
    assert question.endswith(f"Obecna odpowiedź: {ACCOUNT}")  # to copy and fix
    await user.say("They left my mum alone for hours.")
    again = user.texts()[-1].split("\n")
    assert "7. Co się stało: They left my mum alone for hours." in again
    assert "6. Część placówki: Ward 3" in again  # the rest kept
    assert user.keyboard() == ["submit", "edit", "restart"]
    sent = fake_api.sent(user.chat)
    assert all("parse_mode" not in call.params for call in sent)


async def test_slash_change_in_english_and_a_number_that_is_no_row(
    tg: TelegramServer, make_user, fake_api: FakeTelegramAPI
) -> None:
    user: User = make_user(tg)
    summary = await to_summary(user)
    assert "5. When: Not given" in summary.split("\n")
    await user.say("/change 40")
    assert user.texts()[-1].startswith("Sorry, I did not understand.")
    await user.say("/change 6")
    assert user.texts()[-1].endswith("Your answer now: Ward 3")
    await user.say("Ward 4")
    assert "6. Part of the service: Ward 4" in user.texts()[-1].split("\n")
    await user.tap("submit")
    async with tg.service.storage.unit_of_work() as uow:
        (report,) = await uow.reports.list()
    assert report.data["service_part"] == "Ward 4" and report.data["what_happened"] == ACCOUNT
