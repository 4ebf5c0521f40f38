"""Links in Telegram: plain "Label: https://..." lines in the text (sent without a parse mode,
so nothing is read as markup), over the real webhook and the fake Bot API."""

from __future__ import annotations

from bot.config import DEFAULT_LINKS
from tests.channels.telegram.tg_support import TelegramServer, User
from tests.links_support import OUTSIDE_ENGLAND_LINKS, assert_well_formed_https


def url_lines(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        label, sep, url = line.rpartition(": ")
        if sep and url.startswith("https://"):
            found[label] = url
    return found


async def test_the_welcome_and_the_not_england_step_show_their_urls(
    tg: TelegramServer, make_user
) -> None:
    user: User = make_user(tg)
    await user.say("/start")
    welcome = user.texts()[-1]
    assert f"Other ways to contact us: {DEFAULT_LINKS['contact_us']}" in welcome
    assert "03000 616161" in welcome

    await user.tap("start")
    await user.tap("poor")
    await user.tap("outside_england")
    shown = url_lines(user.texts()[-1])
    assert shown == OUTSIDE_ENGLAND_LINKS
    for url in shown.values():
        assert_well_formed_https(url)
    assert user.keyboard() == ["end", "back"]
