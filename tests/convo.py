"""Conversation scripts: whole intake conversations written as data (tests/scripts/*.convo).

    # A line starting with # is a comment; the first one is the script's title.
    switch email_alerts on                    a deployment switch the engine is built with
    > start                 -> experience     a button (choice id), then the step we expect
    > "Oak Lodge, Leeds"    -> provider       typed text (a JSON string)
    > /back                 -> service_type   a command
    says "call 999"                           the last reply contains this (English)
    expect priority = "urgent"                a field of the stored report (a JSON value)
    expect no report                          nothing was stored

The same scripts drive the pure engine (tests/dialogs) and the real HTTP API (tests/e2e), so
a conversation that a non-programmer can read is checked end to end.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPTS_DIR = Path(__file__).parent / "scripts"

_SEND = re.compile(r'^>\s*(?P<input>"(?:[^"\\]|\\.)*"|/\w+|[\w.-]+)\s*(?:->\s*(?P<step>\w+))?\s*$')
_SAYS = re.compile(r'^says\s+(?P<text>"(?:[^"\\]|\\.)*")\s*$')
_SWITCH = re.compile(r"^switch\s+(?P<name>\w+)\s+(?P<state>on|off)$")
_EXPECT = re.compile(r"^expect\s+(?P<field>[\w.]+)\s*=\s*(?P<value>.+)$")


@dataclass(frozen=True)
class Send:
    kind: str  # "choice" | "text" | "command"
    value: str
    expect_step: str | None
    line: int


@dataclass(frozen=True)
class Says:
    text: str
    line: int


@dataclass
class Script:
    name: str
    title: str
    actions: list[Send | Says] = field(default_factory=list)
    expectations: dict[str, Any] = field(default_factory=dict)
    expect_no_report: bool = False
    #: The engine's switches (`bot.engine.conditions.Switch`); one not named is off.
    switches: dict[str, bool] = field(default_factory=dict)


def parse(path: Path) -> Script:
    script = Script(name=path.stem, title=path.stem)
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if script.title == script.name:
                script.title = line.lstrip("# ").strip()
            continue
        if m := _SEND.match(line):
            token = m.group("input")
            if token.startswith('"'):
                kind, value = "text", json.loads(token)
            elif token.startswith("/"):
                kind, value = "command", token[1:]
            else:
                kind, value = "choice", token
            script.actions.append(Send(kind, value, m.group("step"), number))
        elif m := _SAYS.match(line):
            script.actions.append(Says(json.loads(m.group("text")), number))
        elif m := _SWITCH.match(line):
            script.switches[m.group("name")] = m.group("state") == "on"
        elif line == "expect no report":
            script.expect_no_report = True
        elif m := _EXPECT.match(line):
            script.expectations[m.group("field")] = json.loads(m.group("value"))
        else:
            raise ValueError(f"{path.name}:{number}: cannot read {line!r}")
    return script


def all_scripts() -> list[Script]:
    return [parse(p) for p in sorted(SCRIPTS_DIR.glob("*.convo"))]


def field_value(report: dict[str, Any], dotted: str) -> Any:
    value: Any = report
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
