"""Realistic Telegram Update JSON for the benchmark conversation.

Typed answers are `message` updates; button presses are `callback_query` updates that carry
the bot's question message with its inline keyboard, as Telegram sends them. The question
texts and button labels are the ones our bot really sends (rendered in English), so the
frameworks parse updates of the real size.
"""

from __future__ import annotations

import itertools
from typing import Any

from bench.script import SCRIPT

BOT_ID = 123456
BOT_TOKEN = f"{BOT_ID}:AAbenchmarkTOKENnotREALxxxxxxxxxxxxx"
DATE = 1_732_400_000
_update_ids = itertools.count(10_000)


def _user(uid: int) -> dict[str, Any]:
    return {
        "id": uid,
        "is_bot": False,
        "first_name": "Alex",
        "last_name": "Smith",
        "username": f"alex{uid}",
        "language_code": "en",
    }


def _chat(uid: int) -> dict[str, Any]:
    return {
        "id": uid,
        "first_name": "Alex",
        "last_name": "Smith",
        "username": f"alex{uid}",
        "type": "private",
    }


def prompts() -> list[tuple[str, list[tuple[str, str]]]]:
    """(question text, [(choice id, label)]) the bot shows before each turn of the script."""
    from bench.engine_cost import bench_needs
    from bot.engine.engine import Engine
    from bot.engine.types import Inbound
    from bot.i18n import Catalogs
    from dialogs.intake import INTAKE

    catalogs = Catalogs(globals_={"contact_phone": "03000 616161"})
    engine = Engine(INTAKE)
    translate = catalogs.translator("en")
    turn = engine.start("en")
    needs = bench_needs()
    shown = []
    for step in SCRIPT:
        last = turn.outbound[-1]
        shown.append((translate(last.text), [(c.id, translate(c.label)) for c in last.choices]))
        turn = engine.handle(turn.state, Inbound(step.kind, step.value), translate, needs)
    return shown


def conversation_updates(
    uid: int, shown: list[tuple[str, list[tuple[str, str]]]]
) -> list[dict[str, Any]]:
    """All updates of one conversation with chat/user id `uid`: /start, then the script."""
    message_ids = itertools.count(1)
    updates: list[dict[str, Any]] = [
        {
            "update_id": next(_update_ids),
            "message": {
                "message_id": next(message_ids),
                "from": _user(uid),
                "chat": _chat(uid),
                "date": DATE,
                "text": "/start",
                "entities": [{"offset": 0, "length": 6, "type": "bot_command"}],
            },
        }
    ]
    for step, (question, buttons) in zip(SCRIPT, shown, strict=True):
        if step.kind == "text":
            updates.append(
                {
                    "update_id": next(_update_ids),
                    "message": {
                        "message_id": next(message_ids),
                        "from": _user(uid),
                        "chat": _chat(uid),
                        "date": DATE,
                        "text": step.value,
                    },
                }
            )
        else:
            bot_message = {
                "message_id": next(message_ids),
                "from": {
                    "id": BOT_ID,
                    "is_bot": True,
                    "first_name": "Care feedback",
                    "username": "care_feedback_bot",
                },
                "chat": _chat(uid),
                "date": DATE,
                "text": question,
                "reply_markup": {
                    "inline_keyboard": [
                        [{"text": label, "callback_data": cid}] for cid, label in buttons
                    ]
                },
            }
            updates.append(
                {
                    "update_id": next(_update_ids),
                    "callback_query": {
                        "id": str(uid * 1000 + len(updates)),
                        "from": _user(uid),
                        "message": bot_message,
                        "chat_instance": str(-uid),
                        "data": step.value,
                    },
                }
            )
    return updates
