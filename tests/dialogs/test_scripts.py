"""Every conversation script, run on the pure engine with the English catalog."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from bot.directory import DirectoryIndex, describe, parse_directory_csv
from bot.engine.engine import Engine
from bot.engine.needs import FixedNeeds, Match
from bot.engine.types import ConversationState, Inbound, ReportSubmitted, Turn
from bot.i18n import Catalogs
from dialogs.intake import INTAKE
from dialogs.languages import RTL_LOCALES
from tests.convo import Says, Script, Send, all_scripts, field_value
from tests.fixtures import SMALL_DIRECTORY

SCRIPTS = all_scripts()


@pytest.fixture(scope="module")
def catalogs() -> Catalogs:
    return Catalogs(
        rtl=RTL_LOCALES,
        globals_={"privacy_url": "https://example.org/privacy", "contact_phone": "03000 616161"},
    )


@pytest.fixture(scope="module")
def index() -> DirectoryIndex:
    return DirectoryIndex.build(parse_directory_csv(SMALL_DIRECTORY).locations)


class _IndexNeeds(FixedNeeds):
    """The engine's needs answered by a real directory index (as the service does)."""

    def __init__(self, index: DirectoryIndex) -> None:
        super().__init__()
        self.index = index

    def search_directory(self, typed: str, within: str | None) -> Sequence[Match]:
        return [
            (m.location.location_id, m.location.name, describe(m.location))
            for m in self.index.search(typed, service_type=within)
        ]


def run_script(
    script: Script, engine: Engine, catalogs: Catalogs, index: DirectoryIndex
) -> list[dict[str, Any]]:
    needs = _IndexNeeds(index)
    turn = engine.start("en")
    state: ConversationState = turn.state
    reports: list[dict[str, Any]] = []
    last: Turn = turn
    for action in script.actions:
        if isinstance(action, Says):
            said = " ".join(catalogs.render(o.text, state.locale) for o in last.outbound)
            assert action.text in said, (
                f"{script.name}:{action.line}: {action.text!r} not in {said!r}"
            )
            continue
        assert isinstance(action, Send)
        last = engine.handle(
            state,
            Inbound(action.kind, action.value),  # type: ignore[arg-type]
            catalogs.translator(state.locale),
            needs,
        )
        state = last.state
        reports += [dict(e.report) for e in last.events if isinstance(e, ReportSubmitted)]
        if action.expect_step:
            assert state.step == action.expect_step, (
                f"{script.name}:{action.line}: at {state.step!r}"
            )
    return reports


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_script(script: Script, catalogs: Catalogs, index: DirectoryIndex) -> None:
    engine = Engine(INTAKE, switches=script.switches)
    reports = run_script(script, engine, catalogs, index)
    if script.expect_no_report:
        assert reports == []
        return
    assert len(reports) == 1, "exactly one report per completed conversation"
    report = reports[0]
    for name, expected in script.expectations.items():
        assert field_value(report, name) == expected, f"{script.name}: {name}"


def test_scripts_cover_every_step_and_service_type() -> None:
    """The scripts as a whole visit every step id of the dialogue."""
    visited = {
        a.expect_step for s in SCRIPTS for a in s.actions if isinstance(a, Send) and a.expect_step
    }
    all_steps = {s.id for s in INTAKE.steps} - {"language"}  # covered by the i18n tests
    assert all_steps - visited == set()
