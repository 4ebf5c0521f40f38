"""The summary step's reply over real HTTP: its `summary` rows (spec: "the summary step's reply
carries `summary`"), in the person's language, and Change straight from a row, with the
answer as it is now carried in the question's `value`."""

from __future__ import annotations

from typing import Any

import pytest

from bot.app import STORAGE
from tests.conftest import Api, RunningServer
from tests.erasure_support import new_marker, path_to_summary, tables_holding

ACCOUNT = 'They left <b>my mum</b> alone & said "later".'
#: Poor care at a care home: when skipped, the part of the service typed, no contact.
TO_SUMMARY: list[dict[str, str]] = [
    {"choice": "start"},
    {"choice": "poor"},
    {"choice": "care_home"},
    {"text": "Qwxz House, Leeds"},
    {"choice": "friend_family"},
    {"choice": "skip"},
    {"text": "Ward 3"},
    {"text": ACCOUNT},
    {"choice": "yes"},
    {"choice": "no"},
    {"choice": "neither"},
    {"choice": "not_yet"},
    {"choice": "continue"},
    {"choice": "no"},
    {"choice": "no"},
]
STEPS = [
    "experience",
    "service_type",
    "provider",
    "relationship",
    "when",
    "service_part",
    "what_happened",
    "share_with_service",
    "risk",
    "authorities",
    "complaint",
    "contact",
    "referral",
]
#: (locale, label of "Kind of experience", "Poor", "Care home", "When", "not given",
#: "What happened", the quote of the answer now)
WORDS = {
    "pl": (
        "Rodzaj doświadczenia",
        "Zła",
        "Dom opieki",
        "Kiedy",
        "Nie podano",
        "Co się stało",
        "Obecna odpowiedź: ",
    ),
    "ar": ("نوع التجربة", "سيئة", "دار رعاية", "متى", "لم تُقدَّم إجابة", "ماذا حدث", "إجابتك الآن: "),
}


async def to_summary(api: Api, locale: str) -> tuple[dict[str, Any], dict[str, Any]]:
    created = await api.create({"locale": locale})
    assert created.status == 201
    conversation = dict(created.body)
    body: dict[str, Any] = {}
    for number, message in enumerate(TO_SUMMARY):
        sent = await api.send(conversation, {**message, "client_message_id": f"m{number}"})
        assert sent.status == 200, sent.body
        body = sent.body
        if body["step"] != "summary":
            assert "summary" not in body  # only the summary step's reply carries rows
            assert all("summary" not in m and "value" not in m for m in body["messages"])
    return conversation, body


@pytest.mark.parametrize("locale", ["pl", "ar"])
async def test_the_summary_reply_carries_its_rows_in_the_persons_language(
    api: Api, locale: str
) -> None:
    kind, poor, care_home, when, not_given, what_happened, _now = WORDS[locale]
    _conversation, body = await to_summary(api, locale)
    assert body["step"] == "summary" and body["dir"] == ("rtl" if locale == "ar" else "ltr")
    rows = body["summary"]
    assert [r["step"] for r in rows] == STEPS
    assert all(set(r) == {"step", "label", "value", "changeable"} for r in rows)
    assert all(r["changeable"] is True for r in rows)
    by_step = {r["step"]: r for r in rows}
    assert (by_step["experience"]["label"], by_step["experience"]["value"]) == (kind, poor)
    assert by_step["service_type"]["value"] == care_home  # a choice, by its label
    assert (by_step["when"]["label"], by_step["when"]["value"]) == (when, not_given)
    assert by_step["what_happened"]["label"] == what_happened
    assert by_step["what_happened"]["value"] == ACCOUNT  # as typed, nothing escaped
    assert by_step["provider"]["value"] == "Qwxz House, Leeds"
    # The same rows on the message that shows them; its text still says it all (old clients).
    carrying = [m for m in body["messages"] if "summary" in m]
    assert len(carrying) == 1 and carrying[0]["summary"] == rows
    assert carrying[0] is body["messages"][-1]
    assert [c["id"] for c in carrying[0]["choices"]] == ["submit", "edit", "restart"]
    text = carrying[0]["text"]
    assert f"{kind}: {poor}" in text and ACCOUNT in text and not_given in text


async def test_a_reload_and_a_repeated_message_have_the_rows_too(api: Api) -> None:
    conversation, body = await to_summary(api, "pl")
    view = await api.view(conversation)
    assert view.status == 200 and view.body["summary"] == body["summary"]
    assert view.body["transcript"][-1]["summary"] == body["summary"]
    last = len(TO_SUMMARY) - 1
    replayed = await api.send(conversation, {**TO_SUMMARY[last], "client_message_id": f"m{last}"})
    assert replayed.status == 200 and replayed.body["summary"] == body["summary"]


@pytest.mark.parametrize("locale", ["pl", "ar"])
async def test_change_on_a_row_goes_to_that_question_with_its_answer(api: Api, locale: str) -> None:
    *_, now = WORDS[locale]
    conversation, _body = await to_summary(api, locale)
    changed = await api.send(conversation, {"choice": "what_happened"})
    assert changed.status == 200 and changed.body["step"] == "what_happened"
    assert "summary" not in changed.body
    last = changed.body["messages"][-1]
    assert last["input"] == "text" and last["value"] == ACCOUNT  # to prefill the box
    assert last["text"] == now + ACCOUNT  # quoted, for clients that show text only
    fixed = await api.send(conversation, {"text": "They left my mum alone."})
    assert fixed.body["step"] == "summary"
    row = next(r for r in fixed.body["summary"] if r["step"] == "what_happened")
    assert row["value"] == "They left my mum alone."
    assert [r["step"] for r in fixed.body["summary"]] == STEPS  # the rest kept


async def test_change_n_typed_over_the_api(api: Api) -> None:
    conversation, _body = await to_summary(api, "pl")
    changed = await api.send(conversation, {"text": "zmień 6"})
    assert changed.body["step"] == "service_part"
    assert changed.body["messages"][-1]["value"] == "Ward 3"


async def test_a_change_then_cancel_keeps_the_value_nowhere(
    api: Api, app_server: RunningServer
) -> None:
    """The answer carried to a question being changed is in the kept reply, the transcript
    and nowhere else; a cancel erases it with everything typed."""
    engine: Any = app_server.app[STORAGE].engine  # type: ignore[attr-defined]
    marker = new_marker()
    conversation = await api.new_conversation()
    for number, (kind, value) in enumerate(path_to_summary(marker)):
        sent = await api.send(conversation, {kind: value, "client_message_id": f"m{number}"})
        assert sent.status == 200, sent.body
    assert any(marker in r["value"] for r in sent.body["summary"])
    changed = await api.send(conversation, {"choice": "what_happened", "client_message_id": "c"})
    assert marker in changed.body["messages"][-1]["value"]
    cancelled = await api.send(conversation, {"command": "cancel", "client_message_id": "bye"})
    assert cancelled.status == 200 and cancelled.body["step"] == "cancelled"
    assert await tables_holding(engine, marker) == []
    retried = await api.send(conversation, {"choice": "what_happened", "client_message_id": "c"})
    assert retried.body["step"] == "cancelled" and marker not in str(retried.body)
