"""The app's two outbox dispatchers (Telegram's, and email and webhooks') claim, settle and
listen through `Storage.dispatcher_storage()`: on PostgreSQL a pool of their own, so a burst
of turns does not keep the chats' next replies waiting (tests/outbox/test_dispatcher.py
shows it with the turns' pool held); on SQLite the one connection, as the turns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.channels.telegram.delivery import TOPIC
from bot.outbox.setup import DELIVERY
from tests.channels.telegram.conftest import StartTelegram
from tests.channels.telegram.tg_support import User


async def test_the_dispatchers_use_the_dispatchers_connections(
    start_telegram: StartTelegram, backend_url: str, make_user: Callable[..., User]
) -> None:
    server = await start_telegram(database_url=backend_url)
    storage: Any = server.service.storage
    own = storage.dispatcher_storage()
    telegram, delivery = server.channel.dispatcher, server.app[DELIVERY].dispatcher
    assert telegram is not None and telegram.storage is own
    assert delivery is not None and delivery.storage is own
    if storage.backend == "postgresql":
        assert own.engine is not storage.engine
    else:
        assert own is storage
    user = make_user(server)
    await user.say("/start")
    assert user.texts()  # the welcome, sent and settled through them
    assert telegram.counters["sent"] == len(user.texts())


async def test_only_the_delivery_dispatcher_listens_and_telegram_replies_are_not_its_topic(
    start_telegram: StartTelegram, backend_url: str
) -> None:
    """The outbox trigger does not NOTIFY for a Telegram reply (migration 0015): that holds
    only while no listening dispatcher sends them. Telegram's replies go from the claim in
    their turn, their chat's previous settle or the poll."""
    server = await start_telegram(database_url=backend_url)
    telegram, delivery = server.channel.dispatcher, server.app[DELIVERY].dispatcher
    assert telegram is not None and delivery is not None
    assert not telegram.listen
    assert delivery.listen
    assert TOPIC in telegram.routes
    assert TOPIC not in delivery.routes
