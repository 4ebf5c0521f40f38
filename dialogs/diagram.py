"""Generate the Mermaid diagram of a dialogue from its definition (`make diagram`).

The diagram is derived, never drawn by hand, so it cannot drift from the code: a test
checks that `dialogs/intake.mmd` equals what this prints.
"""

from __future__ import annotations

import inspect
import re
import sys

from bot.engine.dialog import Dialog
from dialogs.intake import INTAKE


def _condition_name(when: object) -> str:
    name = getattr(when, "__name__", "")
    if name and name != "<lambda>":
        return name.lstrip("_").replace("_", " ")
    try:
        source = inspect.getsource(when).strip()  # type: ignore[arg-type]
    except (OSError, TypeError):
        return "if"
    found = re.search(r'a\.get\("(\w+)"\)\s*==\s*"(\w+)"', source)
    return f"{found.group(1)} = {found.group(2)}" if found else "if"


def mermaid(dialog: Dialog) -> str:
    lines = ["stateDiagram-v2", f"    [*] --> {dialog.first_step}"]
    for step in dialog.steps:
        lines.append(f"    {step.id}: {step.id} ({step.kind})")
    for step in dialog.steps:
        for branch in step.next:
            label = f" : {_condition_name(branch.when)}" if branch.when else ""
            lines.append(f"    {step.id} --> {branch.to}{label}")
        for choice_id, exit_kind in step.exits.items():
            target = "ended" if exit_kind == "end" else "cancelled"
            lines.append(f"    {step.id} --> {target} : {choice_id}")
    lines += [
        "    summary --> edit_answer : edit",
        "    summary --> submitted : submit",
        "    summary --> welcome : restart",
        "    edit_answer --> summary",
        "    submitted --> [*]",
        "    ended --> [*]",
        "    cancelled --> [*]",
        "    note right of welcome",
        "        At every step: back, restart, help, privacy, language, cancel",
        "    end note",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(mermaid(INTAKE))
