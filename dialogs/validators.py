"""Validators for typed answers, built on the ecosystem's libraries (email-validator,
phonenumbers) rather than home-made patterns. Each returns the value to store or a reason
the person can act on."""

from __future__ import annotations

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from bot.engine.dialog import Answers, Invalid, Valid
from bot.engine.types import T

EMAIL_MIN, EMAIL_MAX = 6, 256
PHONE_MIN, PHONE_MAX = 10, 100


def email_address(text: str, _answers: Answers) -> Valid | Invalid:
    candidate = text.strip()
    if not EMAIL_MIN <= len(candidate) <= EMAIL_MAX or " " in candidate:
        return Invalid(
            T("That does not look like an email address. It should look like name@example.com.")
        )
    try:
        # No DNS look-up: a turn must not wait on the network, and a typo check is enough here.
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError:
        return Invalid(
            T("That does not look like an email address. It should look like name@example.com.")
        )
    return Valid(result.normalized)


def uk_phone(text: str, _answers: Answers) -> Valid | Invalid:
    candidate = text.strip()
    reason = Invalid(
        T(
            "That does not look like a UK phone number. Please type it with the area code, like 020 7946 0958, or a mobile number starting with 07."
        )
    )
    if not PHONE_MIN <= len(candidate) <= PHONE_MAX:
        return reason
    try:
        number = phonenumbers.parse(candidate, "GB")
    except phonenumbers.NumberParseException:
        return reason
    if number.country_code != 44 or not phonenumbers.is_valid_number(number):
        return reason
    return Valid(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def person_name(text: str, _answers: Answers) -> Valid | Invalid:
    if not any(ch.isalpha() for ch in text):
        return Invalid(T("Please type your name using letters."))
    return Valid(text)
