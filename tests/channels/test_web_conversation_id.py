"""The conversation id in a web API path: exactly the ids we issue (`str(uuid4())`), in any
case, as `uuid.UUID` and its canonical form decided before; anything else is a 404."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.channels.web.api import _parse_conversation_id
from bot.channels.web.http import ApiError

ISSUED = str(uuid.UUID("12345678-9abc-4def-8123-456789abcdef"))


def _by_uuid(raw: str) -> str | None:
    """The rule as it was written with `uuid.UUID`: None for a 404."""
    try:
        canonical = str(uuid.UUID(raw))
    except ValueError:
        return None
    return canonical if canonical == raw.lower() else None


def _parsed(raw: str) -> str | None:
    try:
        return _parse_conversation_id(raw)
    except ApiError as exc:
        assert (exc.status, exc.code) == (404, "not_found")
        return None


@pytest.mark.parametrize(
    "raw",
    [
        ISSUED,
        ISSUED.upper(),
        str(uuid.uuid4()),
        "{" + ISSUED + "}",
        "urn:uuid:" + ISSUED,
        ISSUED.replace("-", ""),
        ISSUED + "\n",
        " " + ISSUED,
        ISSUED[:-1] + "g",
        ISSUED.replace("1", "١"),  # Arabic-Indic digits: int() reads them, no id has them
        ISSUED.replace("-", "_"),
        ISSUED[:8] + ISSUED[9:13] + "-" + ISSUED[8] + ISSUED[14:],
        "",
        "not-a-uuid",
    ],
)
def test_as_uuid_decided(raw: str) -> None:
    assert _parsed(raw) == _by_uuid(raw)


@given(st.text(alphabet="0123456789abcdefABCDEF-{}:urnid_ \n١", max_size=45))
def test_any_text_as_uuid_decides(raw: str) -> None:
    assert _parsed(raw) == _by_uuid(raw)


def test_an_issued_id_in_upper_case_is_the_same_conversation() -> None:
    assert _parse_conversation_id(ISSUED.upper()) == ISSUED
