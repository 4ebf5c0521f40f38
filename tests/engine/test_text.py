"""Folding typed text for matching: the quick way for ASCII gives what the full way gives."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from bot.engine.text import fold


def _fold_by_the_full_way(text: str) -> str:
    """`fold` as written before its ASCII shortcut, for every text."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(
        ch for ch in folded if not unicodedata.combining(ch) and unicodedata.category(ch) != "Cf"
    )
    return re.sub(r"[\W_]+", " ", folded).strip()


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_ascii_folds_as_by_the_full_way(text: str) -> None:
    assert fold(text) == _fold_by_the_full_way(text)


@given(st.text())
def test_any_text_folds_as_by_the_full_way(text: str) -> None:
    assert fold(text) == _fold_by_the_full_way(text)


def test_fold_examples() -> None:
    assert fold("  CANCEL!! ") == "cancel"
    assert fold("St_Mary's\tHouse") == "st mary s house"
    assert fold("Zmień") == "zmien"
    assert fold("ﬁve") == "five"  # a compatibility ligature
    assert fold("can\u200bcel") == "cancel"  # a zero-width space (a format character)
