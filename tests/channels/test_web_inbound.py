"""How typed input comes in over the real HTTP API: command words, unknown commands, text
stored exactly as typed, dangerous characters in any field."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.appkeys import SERVICE
from tests.conftest import Api, StartServer
from tests.pg_schema import fresh_postgres_schema

UNKNOWN = (
    "I don't know that command. You can use: back, restart, help, privacy, language, cancel, exit."
)


async def _to(api: Api, *answers: dict[str, Any], locale: str = "en") -> dict[str, Any]:
    created = await api.create({"locale": locale})
    assert created.status == 201
    conversation = dict(created.body)
    for answer in answers:
        turn = await api.send(conversation, answer)
        assert turn.status == 200, turn.body
    return conversation


TO_PROVIDER = ({"choice": "start"}, {"choice": "poor"}, {"choice": "gp"})
TO_WHEN = (*TO_PROVIDER, {"text": "Qwxz Zzyq Nonexistent Place"}, {"choice": "self"})


async def test_cancel_typed_at_when_cancels(api: Api) -> None:
    conversation = await _to(api, *TO_WHEN)
    turn = await api.send(conversation, {"text": "cancel"})
    assert turn.status == 200
    assert turn.body["done"] is True and turn.body["step"] == "cancelled"
    assert "not kept anything" in turn.body["messages"][0]["text"]


async def test_help_typed_at_provider_gives_help_and_the_step_stays(api: Api) -> None:
    conversation = await _to(api, *TO_PROVIDER)
    for typed in ("help", "/help", " Help? "):
        turn = await api.send(conversation, {"text": typed})
        assert turn.status == 200
        assert turn.body["step"] == "provider"
        texts = [m["text"] for m in turn.body["messages"]]
        assert texts[0].startswith("Type what you know")  # the step's own advice
        assert "use these commands" in texts[1]
    view = await api.view(conversation)
    assert view.body["step"] == "provider"


async def test_the_persons_own_command_word_works_and_help_names_it(api: Api) -> None:
    conversation = await _to(api, *TO_PROVIDER, locale="cy")
    helped = await api.send(conversation, {"text": "cymorth"})
    assert helped.body["step"] == "provider"
    assert "canslo (" in helped.body["messages"][1]["text"]
    english = await api.send(conversation, {"text": "Back"})
    assert english.body["step"] == "service_type"
    cancelled = await api.send(conversation, {"text": "canslo"})
    assert cancelled.body["done"] is True


async def test_longer_text_with_a_command_word_is_an_answer(api: Api) -> None:
    conversation = await _to(api, *TO_WHEN)
    turn = await api.send(conversation, {"text": "After they said cancel the visit"})
    assert turn.body["step"] == "service_part" and turn.body["done"] is False


@pytest.mark.parametrize("typed", ["/stop", "/settings", "/", "/cancelled"])
async def test_an_unknown_slash_word_at_the_provider_step_is_reprompted(
    api: Api, typed: str
) -> None:
    conversation = await _to(api, *TO_PROVIDER)
    turn = await api.send(conversation, {"text": typed})
    assert turn.status == 200, turn.body
    assert turn.body["step"] == "provider"
    assert turn.body["messages"][0]["text"] == UNKNOWN


TEXTS = {
    "bengali ZWJ and ZWNJ": "র\u200d্যাব আর ক্\u200cষ — কেউ আসেনি",
    "emoji ZWJ family": "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 waited all night",
    "urdu ZWNJ": "می\u200cخواہم — عملہ نہیں آیا",
    "decomposed accent": "cafe\u0301 staff",
}


async def _report_with(api: Api, account: str) -> tuple[dict[str, Any], dict[str, Any]]:
    conversation = await _to(
        api, *TO_WHEN, {"text": account}, {"choice": "skip"}, {"text": account}
    )
    for answer in (
        {"choice": "yes"},
        {"choice": "no"},
        {"choice": "neither"},
        {"choice": "not_yet"},
    ):
        assert (await api.send(conversation, answer)).status == 200
    for answer in (
        {"choice": "continue"},
        {"choice": "no"},
        {"choice": "no"},
        {"choice": "submit"},
    ):
        turn = await api.send(conversation, answer)
        assert turn.status == 200, turn.body
    assert turn.body["reference"], turn.body
    view = await api.view(conversation)
    return dict(turn.body), dict(view.body)


@pytest.mark.parametrize("name", sorted(TEXTS))
async def test_text_is_stored_exactly_as_typed(api: Api, app_server: Any, name: str) -> None:
    typed = TEXTS[name]
    submitted, view = await _report_with(api, typed)
    service = app_server.app[SERVICE]
    async with service.storage.unit_of_work() as uow:
        report = await uow.reports.get(submitted["reference"])
    assert report is not None
    assert report.data["when"].encode("utf-8") == typed.encode("utf-8")
    assert report.data["what_happened"].encode("utf-8") == typed.encode("utf-8")
    said = [e for e in view["transcript"] if e["role"] == "user" and e.get("kind") == "text"]
    assert [e["value"].encode("utf-8") for e in said].count(typed.encode("utf-8")) == 2
    assert [e["text"].encode("utf-8") for e in said].count(typed.encode("utf-8")) == 2


async def test_dangerous_characters_are_removed_from_typed_text(api: Api, app_server: Any) -> None:
    submitted, _view = await _report_with(api, "a\u202eb\x00c\u2066d\x1be\u200df")
    async with app_server.app[SERVICE].storage.unit_of_work() as uow:
        report = await uow.reports.get(submitted["reference"])
    assert report is not None and report.data["when"] == "abcde\u200df"


@pytest.fixture
async def pg_api(start_server: StartServer, client: Any) -> AsyncIterator[Api]:
    async with fresh_postgres_schema("intake_web_inbound") as url:
        server = await start_server(database_url=url)
        yield Api(client, server.base_url)


@pytest.mark.postgres
async def test_nul_in_a_choice_gets_a_normal_answer_on_postgres(pg_api: Api) -> None:
    conversation = await _to(pg_api, {"choice": "start"})
    turn = await pg_api.send(conversation, {"choice": "po\x00or"})
    assert turn.status == 200, turn.body
    assert turn.body["step"] == "service_type"
    text = await pg_api.send(conversation, {"text": "\x00"})
    assert text.status == 200, text.body
