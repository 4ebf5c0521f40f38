"""Conditions are values: they evaluate, combine, and describe themselves for the diagram."""

from __future__ import annotations

from bot.engine.conditions import ALWAYS, Answer
from dialogs.intake import ALERTS_OFFERED, MHA_APPLIES, POOR, WANTS_CONTACT


def test_is_in_and_equals() -> None:
    poor = Answer("experience").is_in("poor", "mixed")
    assert poor.evaluate({"experience": "mixed"}) and not poor.evaluate({"experience": "good"})
    assert not poor.evaluate({})
    assert poor.describe() == "experience in poor, mixed"
    assert Answer("contact").equals("yes").describe() == "contact = yes"


def test_combined_with_and_or_not() -> None:
    a, b = Answer("a").equals("1"), Answer("b").equals("2")
    assert (a & b).evaluate({"a": "1", "b": "2"}) and not (a & b).evaluate({"a": "1"})
    assert (a | b).evaluate({"b": "2"}) and not (a | b).evaluate({})
    assert (~a).evaluate({}) and not (~a).evaluate({"a": "1"})
    assert ((a | b) & ~a).describe() == "(a = 1 or b = 2) and not (a = 1)"
    assert ALWAYS.evaluate({}) and ALWAYS.describe() == "always"


def test_given_ignores_empty_and_skipped_answers_and_reads_fields() -> None:
    email = Answer("contact_email").is_given()
    assert email.evaluate({"contact_email": "a@b.org"})
    assert not email.evaluate({"contact_email": "skip"}) and not email.evaluate({})
    location = Answer("provider", "location_id").is_given()
    assert location.evaluate({"provider": {"location_id": "1-1"}})
    assert not location.evaluate({"provider": {"location_id": None}})
    assert not location.evaluate({"provider": "typed text"})
    assert location.describe() == "provider.location_id given"


def test_the_intake_conditions_hold_as_the_functions_they_replace_did() -> None:
    assert MHA_APPLIES.evaluate({"experience": "poor", "service_type": "hospital"})
    assert not MHA_APPLIES.evaluate({"experience": "good", "service_type": "hospital"})
    assert POOR.evaluate({"experience": "poor"})
    matched = {"contact_email": "a@b.org", "provider": {"location_id": "1-1"}}
    assert ALERTS_OFFERED.evaluate(matched)
    assert not ALERTS_OFFERED.evaluate({**matched, "contact_email": "skip"})
    assert WANTS_CONTACT.evaluate({"contact": "yes", "contact_phone": "0113 496 0000"})
    assert not WANTS_CONTACT.evaluate({"contact": "yes", "contact_phone": "no_contact"})
