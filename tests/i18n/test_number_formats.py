"""Babel's number data for every language offered is read when the catalogs are built, at
the process's start, never in the middle of a turn: the first number written in a language
read its CLDR data then (15-40 ms on a slow machine, the event loop waiting), which made a
Telegram open loop's p99 (BENCHMARKS.md, "A fresh server's first seconds")."""

from __future__ import annotations

from typing import Any

import babel.localedata
import pytest

from bot.engine.types import Text
from bot.i18n import Catalogs, format_number


def test_a_number_in_any_language_offered_reads_no_locale_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    babel.localedata._cache.clear()  # as a fresh process has it
    format_number.cache_clear()
    catalogs = Catalogs()
    assert len(catalogs.locales) > 1
    read: list[str] = []
    load = babel.localedata.load

    def recording(name: Any, *args: Any, **kwargs: Any) -> Any:
        read.append(str(name))
        return load(name, *args, **kwargs)

    monkeypatch.setattr(babel.localedata, "load", recording)
    counter = Text("Question {n} of {total}", (("n", 3), ("total", 1234)))
    written = {code: catalogs.render(counter, code) for code in catalogs.locales}
    assert read == []
    assert written["en"] == "Question 3 of 1,234"
    assert written["pl"] == "Pytanie 3 z 1\xa0234"
