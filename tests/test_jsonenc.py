"""`bot.jsonenc.dumps`: the same JSON as `json.dumps` reads back; what would not read back the
same (or is not JSON at all) is refused."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.jsonenc import dumps

VALUES: list[Any] = [
    {"text": 'שלום مرحبا 😀 <b>x</b> & "q" back\\slash\nline\ttab \u200d\u00e9', "n": None},
    [{"seq": 3, "role": "bot", "payload": {"choices": [{"id": "a", "label": "Ä"}]}}, True, False],
    {"nested": {"deep": [[], {}, "", 0, -1, 2**62]}},
    "\u0000 control \u001f and \u2028 separators \u2029",
]


@pytest.mark.parametrize("value", VALUES)
def test_reads_back_as_the_standard_encoding_does(value: Any) -> None:
    encoded = dumps(value)
    assert isinstance(encoded, bytes)
    assert json.loads(encoded) == json.loads(json.dumps(value)) == value
    assert json.loads(encoded.decode("utf-8")) == value  # as text, as SQLite keeps it


@dataclasses.dataclass
class _Row:
    field: str


@pytest.mark.parametrize(
    "value",
    [{1: "a"}, {"a": "\ud800"}, {"at": datetime.now(UTC)}, _Row("x"), {1, 2}],
    ids=["int key", "lone surrogate", "datetime", "dataclass", "set"],
)
def test_what_is_not_plain_json_is_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        dumps(value)
