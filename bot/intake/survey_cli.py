"""`intake survey results` and `intake survey purge`: the survey about the chat, for staff.

The answers are anonymous (a day, a channel, a language, the answers), so the results are
counts per answer; the typed suggestions are listed only when asked for (`--comments`),
since a person may have typed something personal despite being asked not to.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from bot.config import Settings
from bot.engine.dialog import Dialog
from bot.ports import ChatSurvey

#: Survey answers older than this many days are deleted by `intake survey purge`.
DEFAULT_RETENTION_DAYS = 365


@dataclass
class SurveyResults:
    count: int = 0
    first_day: date | None = None
    last_day: date | None = None
    #: Per choice question: (choice id, how many), in the dialogue's order, then "skipped".
    choices: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    #: Per text question: the suggestions typed, oldest first.
    comments: dict[str, list[str]] = field(default_factory=dict)


def tally(dialog: Dialog, surveys: Sequence[ChatSurvey]) -> SurveyResults:
    """Counts per answer of every question of `dialog`, zeros included."""
    results = SurveyResults(count=len(surveys))
    if surveys:
        results.first_day = min(s.day for s in surveys)
        results.last_day = max(s.day for s in surveys)
    for step in dialog.steps:
        if step.kind == "choice":
            counted = Counter(s.answers.get(step.id) or "skipped" for s in surveys)
            ids = [c.id for c in step.choices]
            rows = [(i, counted[i]) for i in ids]
            rows += [(i, n) for i, n in counted.items() if i not in ids]
            results.choices[step.id] = rows
        elif step.kind == "text":
            results.comments[step.id] = [
                str(text) for s in surveys if (text := s.answers.get(step.id))
            ]
    return results


def format_results(results: SurveyResults, *, with_comments: bool) -> str:
    if results.count == 0:
        return "no survey answers stored\n"
    lines = [f"{results.count} surveys answered, {results.first_day} to {results.last_day}"]
    for step_id, rows in results.choices.items():
        lines += ["", step_id]
        lines += [f"  {choice:<16} {n:>6}" for choice, n in rows]
    for step_id, comments in results.comments.items():
        lines += ["", f"{step_id}: {len(comments)} suggestions typed"]
        if with_comments:
            lines += [f"  - {' '.join(text.split())}" for text in comments]
        elif comments:
            lines.append("  (list them with --comments)")
    return "\n".join(lines) + "\n"


def add_commands(sub: Any) -> None:
    survey = sub.add_parser(
        "survey", help="the survey about the chat (anonymous, apart from the reports)"
    ).add_subparsers(title="survey commands")
    results = survey.add_parser("results", help="how many gave each answer")
    results.add_argument("--since", type=date.fromisoformat, default=None, help="YYYY-MM-DD")
    results.add_argument(
        "--comments", action="store_true", help="also list the suggestions typed (staff only)"
    )
    results.set_defaults(handler=lambda s, a: asyncio.run(_results(s, a)))
    purge = survey.add_parser("purge", help="delete survey answers older than the retention")
    purge.add_argument(
        "--older-than-days",
        type=int,
        default=DEFAULT_RETENTION_DAYS,
        help=f"at least 1 (default {DEFAULT_RETENTION_DAYS})",
    )
    purge.set_defaults(handler=lambda s, a: asyncio.run(_purge(s, a.older_than_days)))


async def _results(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import build_service

    service = await build_service(settings)
    try:
        surveys = await service.survey_answers(since=args.since)
    finally:
        await service.storage.close()
    assert service.survey is not None
    sys.stdout.write(
        format_results(tally(service.survey.dialog, surveys), with_comments=args.comments)
    )
    return 0


async def _purge(settings: Settings, older_than_days: int) -> int:
    from bot.app import build_service

    if older_than_days < 1:
        print("--older-than-days must be at least 1", file=sys.stderr)
        return 2
    service = await build_service(settings)
    try:
        purged = await service.purge_surveys(timedelta(days=older_than_days))
    finally:
        await service.storage.close()
    print(f"deleted {purged} survey answers older than {older_than_days} days")
    return 0
