"""The next step as links in the web chat API: `links` on a message (only when it has some),
https only, from configuration; and care outside England, which we do not check, ends the
conversation keeping nothing that was typed, in any table."""

from __future__ import annotations

from typing import Any

from bot.app import STORAGE
from bot.config import DEFAULT_LINKS
from tests.conftest import Api, RunningServer, StartServer
from tests.erasure_support import new_marker, tables_holding
from tests.links_support import OUTSIDE_ENGLAND_LINKS, assert_well_formed_https


def links_of(body: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for message in body["messages"]:
        if "links" in message:
            assert message["links"], "links is left out when there are none, never []"
        for link in message.get("links", []):
            assert set(link) == {"label", "url"}
            found[link["label"]] = link["url"]
    return found


async def walk(api: Api, conversation: dict[str, Any], *steps: tuple[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for kind, value in steps:
        sent = await api.send(conversation, {kind: value})
        assert sent.status == 200, sent.body
        body = sent.body
    return body


async def test_the_welcome_gives_the_phone_and_a_contact_link(api: Api) -> None:
    created = await api.create()
    assert created.status == 201
    messages = created.body["messages"]
    with_links = [m for m in messages if "links" in m]
    assert len(with_links) == 1
    (message,) = with_links
    assert "automated chat" in message["text"] and "10 minutes" in message["text"]
    assert "03000 616161" in message["text"]
    assert message["links"] == [
        {"label": "Other ways to contact us", "url": DEFAULT_LINKS["contact_us"]}
    ]
    assert all("links" not in m for m in messages if m is not message)


async def test_routes_are_given_where_they_are_needed_all_https(api: Api) -> None:
    conversation = await api.new_conversation()
    seen: dict[str, str] = {}
    at_risk = await walk(
        api,
        conversation,
        ("choice", "start"),
        ("choice", "poor"),
        ("choice", "mental_health"),
        ("text", "Qwxz Zzyq Nowhere Team"),
    )
    if at_risk["step"] == "provider":
        at_risk = await walk(api, conversation, ("choice", "none"))
    at_risk = await walk(
        api,
        conversation,
        ("choice", "work"),
        ("choice", "yes"),
    )
    assert at_risk["step"] == "whistleblowing"
    assert links_of(at_risk) == {
        "Protect: whistleblowing advice": DEFAULT_LINKS["whistleblowing_advice"]
    }
    seen |= links_of(at_risk)
    risk = await walk(
        api,
        conversation,
        ("choice", "continue"),
        ("choice", "skip"),
        ("choice", "skip"),
        ("text", "Nobody came."),
        ("choice", "yes"),
    )
    assert risk["step"] == "risk"
    assert links_of(risk) == {
        "NHS 111": DEFAULT_LINKS["nhs_111"],
        "Samaritans": DEFAULT_LINKS["samaritans"],
    }
    assert "116 123" in " ".join(m["text"] for m in risk["messages"])
    seen |= links_of(risk)
    authorities = await walk(api, conversation, ("choice", "not_sure"), ("choice", "neither"))
    assert authorities["step"] == "complaint"
    assert links_of(authorities) == {"Find your local council": DEFAULT_LINKS["find_council"]}
    assert "adult safeguarding" in authorities["messages"][0]["text"]
    info = await walk(api, conversation, ("choice", "not_yet"))
    assert info["step"] == "complaint_info"
    assert set(links_of(info)) == {
        "How to complain about a service",
        "Complain about NHS care",
        "Find your local council",
        "Parliamentary and Health Service Ombudsman",
        "Local Government and Social Care Ombudsman",
    }
    seen |= links_of(info)
    mha = await walk(api, conversation, ("choice", "continue"), ("choice", "yes"))
    assert mha["step"] == "contact"
    assert links_of(mha) == {
        "Complain about the use of the Mental Health Act": DEFAULT_LINKS["complain_mha"]
    }
    assert "independent mental health advocate" in mha["messages"][0]["text"]
    seen |= links_of(mha)
    for url in seen.values():
        assert_well_formed_https(url)


async def test_no_safeguarding_note_when_nobody_is_at_risk(api: Api) -> None:
    conversation = await api.new_conversation()
    body = await walk(
        api,
        conversation,
        ("choice", "start"),
        ("choice", "poor"),
        ("choice", "dentist"),
        ("text", "Qwxz Zzyq Nowhere Dental"),
    )
    if body["step"] == "provider":
        await walk(api, conversation, ("choice", "none"))
    body = await walk(
        api,
        conversation,
        ("choice", "self"),
        ("choice", "skip"),
        ("choice", "skip"),
        ("text", "Rude."),
        ("choice", "yes"),
        ("choice", "no"),
        ("choice", "neither"),
    )
    assert body["step"] == "complaint"
    assert links_of(body) == {}


async def test_childrens_social_care_points_to_ofsted_and_child_protection(api: Api) -> None:
    conversation = await api.new_conversation()
    body = await walk(
        api,
        conversation,
        ("choice", "start"),
        ("choice", "poor"),
        ("choice", "childrens_social_care"),
    )
    assert body["step"] == "not_covered"
    assert links_of(body) == {
        "Ofsted": DEFAULT_LINKS["ofsted"],
        "Report a worry about a child": DEFAULT_LINKS["report_child_abuse"],
    }
    assert "health care for children" in " ".join(m["text"] for m in body["messages"])


async def test_a_configured_address_that_is_not_https_is_never_sent(
    start_server: StartServer, client: Any
) -> None:
    links = {**DEFAULT_LINKS, "contact_us": "http://example.org/contact"}
    server = await start_server(links=links)
    created = await Api(client, server.base_url).create()
    assert created.status == 201
    assert all("links" not in m for m in created.body["messages"])


async def test_care_outside_england_chosen_by_mistake_goes_back(api: Api) -> None:
    conversation = await api.new_conversation()
    body = await walk(
        api, conversation, ("choice", "start"), ("choice", "good"), ("choice", "outside_england")
    )
    assert body["step"] == "outside_england"
    shown = links_of(body)
    assert shown == OUTSIDE_ENGLAND_LINKS
    for url in shown.values():
        assert_well_formed_https(url)
    assert [c["id"] for c in body["messages"][-1]["choices"]] == ["end", "back"]
    back = await walk(api, conversation, ("choice", "back"))
    assert back["step"] == "service_type" and not back["done"]


async def test_a_postcode_outside_england_ends_keeping_nothing(
    api: Api, app_server: RunningServer
) -> None:
    engine: Any = app_server.app[STORAGE].engine  # type: ignore[attr-defined]
    marker = new_marker()
    conversation = await api.new_conversation()
    body = await walk(api, conversation, ("choice", "start"), ("choice", "poor"))
    body = await walk(api, conversation, ("choice", "other"), ("text", f"A {marker} clinic"))
    assert body["step"] == "provider"
    sent = await api.send(
        conversation, {"text": f"{marker} House, Glasgow G12 8QQ", "client_message_id": "p"}
    )
    assert sent.status == 200
    if sent.body["step"] == "provider":  # directory matches offered: none is right
        sent = await api.send(conversation, {"choice": "none", "client_message_id": "n"})
    assert sent.body["step"] == "outside_england", sent.body
    assert await tables_holding(engine, marker) != []  # kept while the person decides

    ended = await api.send(conversation, {"choice": "end", "client_message_id": "e"})
    assert ended.status == 200 and ended.body["step"] == "ended" and ended.body["done"]
    assert ended.body["reference"] is None
    assert await tables_holding(engine, marker) == []
    retried = await api.send(conversation, {"text": "again", "client_message_id": "p"})
    assert retried.status == 200 and marker not in str(retried.body)
    view = await api.view(conversation)
    assert view.status == 200 and view.body["transcript"] == []
