"""The same conversation in each of the twelve languages over the real HTTP API: the same
step and choice ids everywhere, every text translated and complete, and a language switch
in the middle that keeps the step and every answer."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot.appkeys import STORAGE
from dialogs.languages import LANGUAGES, RTL_LOCALES
from tests.conftest import Api, RunningServer, StartServer

CODES = [code for code, _ in LANGUAGES]
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")

#: A poor-care report that passes through the explanations people most often get wrong.
SCRIPT: list[dict[str, str]] = [
    {"choice": "start"},
    {"choice": "poor"},
    {"choice": "mental_health"},
    {"text": "Qwxz Zzyq Nonexistent Ward"},
    {"choice": "work"},
    {"choice": "yes"},
    {"choice": "continue"},
    {"choice": "skip"},
    {"choice": "skip"},
    {"text": "Staff lock people in the garden."},
    {"choice": "yes"},  # may share with the service
    {"choice": "yes"},
    {"choice": "neither"},
    {"choice": "not_yet"},
    {"choice": "continue"},
    {"choice": "yes"},
    {"choice": "no"},
    {"choice": "no"},  # no organisation pointed them here
    {"choice": "submit"},
]


@pytest.fixture
async def app_server(start_server: StartServer) -> RunningServer:
    """Twelve whole conversations from one address: more than the per-address rate limit."""
    return await start_server(rate_limit_per_minute=10_000)


async def run(api: Api, locale: str) -> list[dict[str, Any]]:
    created = await api.create({"locale": locale})
    assert created.status == 201 and created.body["locale"] == locale
    replies = [created.body]
    for number, body in enumerate(SCRIPT):
        result = await api.send(created.body, {**body, "client_message_id": f"{locale}-{number}"})
        assert result.status == 200, result.body
        replies.append(result.body)
    return replies


def texts(reply: dict[str, Any]) -> list[str]:
    return [m["text"] for m in reply["messages"]] + [
        c["label"] for m in reply["messages"] for c in m["choices"]
    ]


def shape(reply: dict[str, Any]) -> tuple[Any, ...]:
    return (
        reply["step"],
        reply["done"],
        tuple(tuple(c["id"] for c in m["choices"]) for m in reply["messages"]),
    )


async def test_the_same_conversation_in_every_language(api: Api, app_server: RunningServer) -> None:
    english = await run(api, "en")
    assert english[-1]["step"] == "submitted" and english[-1]["reference"]
    for locale in CODES[1:]:
        replies = await run(api, locale)
        assert [shape(r) for r in replies] == [shape(r) for r in english], locale
        for ours, theirs in zip(replies, english, strict=True):
            assert ours["dir"] == ("rtl" if locale in RTL_LOCALES else "ltr")
            for text in texts(ours):
                assert text.strip() and not PLACEHOLDER.search(text), (locale, text)
            # Every sentence is translated (a one-word label may be a true cognate: Romanian
            # "Dentist"); the person's own words echoed back are not translated.
            ours_texts = [t for t in texts(ours) if "Qwxz" not in t and "garden" not in t]
            theirs_texts = [t for t in texts(theirs) if "Qwxz" not in t and "garden" not in t]
            same = [
                t
                for t, e in zip(ours_texts, theirs_texts, strict=True)
                if t == e and len(t.split()) >= 3
            ]
            assert not same, (locale, ours["step"], same)
        assert replies[-1]["reference"] in replies[-1]["messages"][0]["text"]

    async with app_server.app[STORAGE].unit_of_work() as uow:
        stored = await uow.reports.list(limit=100)
    assert len(stored) == len(CODES)
    # Staff read every report the same way: choice ids, whatever the language.
    assert {
        (r.data["experience"], r.data["risk"], r.data["mha"], r.data["works_there"]) for r in stored
    } == {("poor", "yes", "yes", "yes")}
    assert {r.locale for r in stored} == set(CODES)


@pytest.mark.parametrize("target", ["pl", "ar"])
async def test_switching_language_mid_conversation_keeps_step_and_answers(
    api: Api, target: str
) -> None:
    created = await api.create({"locale": "en"})
    for number, body in enumerate(SCRIPT[:4]):
        await api.send(created.body, {**body, "client_message_id": str(number)})
    asked = await api.send(created.body, {"command": "language", "client_message_id": "lang"})
    assert asked.body["step"] == "language"
    assert {c["id"] for c in asked.body["messages"][-1]["choices"]} == set(CODES)
    switched = await api.send(created.body, {"choice": target, "client_message_id": "pick"})
    assert switched.body["step"] == "relationship" and switched.body["locale"] == target
    assert switched.body["dir"] == ("rtl" if target in RTL_LOCALES else "ltr")
    english_question = "How do you know about this care?"
    assert english_question not in " ".join(texts(switched.body))
    # The conversation carries on in the new language with every earlier answer kept.
    rest = SCRIPT[4:]
    reply = switched.body
    for number, body in enumerate(rest):
        reply = (await api.send(created.body, {**body, "client_message_id": f"r{number}"})).body
    assert reply["step"] == "submitted"
    view = await api.view(created.body)
    assert view.body["locale"] == target
