"""A burst above the send limit is shared fairly across chats, through the real delivery path.

The replies of 24 chats, three each, are committed while no dispatcher runs (as when a burst
arrives faster than Telegram's limit lets us send), each chat's three one after another.
Then the dispatcher starts, with a shared limit that makes them queue. First come, first
served would send the first chat's three replies before the last chat's first; sharing
fairly, every chat's first reply goes before any chat's third. Only the order is checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tests.channels.telegram.conftest import StartTelegram
from tests.channels.telegram.tg_support import FAST, User
from tests.fakes.telegram_api import FakeTelegramAPI

CHATS = 24  # more than the dispatcher used to hold at once (16)


async def test_a_burst_from_many_chats_is_sent_round_robin_not_first_come(
    start_telegram: StartTelegram, make_user: Callable[..., User], fake_api: FakeTelegramAPI
) -> None:
    tg = await start_telegram(
        options=replace(FAST, run_dispatcher=False, rate_per_second=50.0, rate_burst=1.0)
    )
    people = [make_user(tg) for _ in range(CHATS)]
    for person in people:  # chat by chat: the first chat's replies are the oldest rows
        for text in ("/start", "/help", "/privacy"):
            await person.say(text, settle=False)
    assert await tg.pending() == 3 * CHATS
    dispatcher = tg.channel.dispatcher
    assert dispatcher is not None
    dispatcher.start()
    await tg.settle(within=30.0)

    order = [call.chat_id for call in fake_api.of("sendMessage")]
    assert sorted(order) == sorted(p.chat for p in people for _ in range(3))
    first = {p.chat: order.index(p.chat) for p in people}
    third = {p.chat: [i for i, chat in enumerate(order) if chat == p.chat][2] for p in people}
    assert max(first.values()) < min(third.values())
