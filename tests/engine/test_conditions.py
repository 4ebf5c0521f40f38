"""Conditions are values: they evaluate, combine, and describe themselves for the diagram."""

from __future__ import annotations

from bot.engine.conditions import ALWAYS, Answer, Switch
from dialogs.intake import ALERTS_OFFERED, EMAIL_ALERTS, MHA_APPLIES, POOR, WANTS_CONTACT


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
    deliverable = {EMAIL_ALERTS}
    assert ALERTS_OFFERED.evaluate(matched, deliverable)
    assert not ALERTS_OFFERED.evaluate({**matched, "contact_email": "skip"}, deliverable)
    # Where alert emails cannot be sent, they are never offered.
    assert not ALERTS_OFFERED.evaluate(matched)
    assert WANTS_CONTACT.evaluate({"contact": "yes", "contact_phone": "0113 496 0000"})
    assert not WANTS_CONTACT.evaluate({"contact": "yes", "contact_phone": "no_contact"})


def test_a_switch_holds_only_when_the_engine_was_given_it_on() -> None:
    """A switch is about the deployment, not the answers: it reads only the switches."""
    email = Switch("email_alerts")
    assert email.evaluate({}, {"email_alerts"}) and email.evaluate({"x": "1"}, {"email_alerts"})
    assert not email.evaluate({"email_alerts": "yes"})  # an answer never turns it on
    assert not email.evaluate({}, {"something_else"})
    given = Answer("a").is_given()
    assert (email & given).evaluate({"a": "1"}, {"email_alerts"})
    assert not (email & given).evaluate({"a": "1"}, set())
    assert (~email | given).evaluate({}, set()) and not (~email).evaluate({}, {"email_alerts"})
    assert email.describe() == "switch email_alerts on"
    assert (email & given).describe() == "switch email_alerts on and a given"
