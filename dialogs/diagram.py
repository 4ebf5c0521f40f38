"""Generate the Mermaid diagram of a dialogue from its definition (`make diagram`).

The diagram is derived, never drawn by hand, so it cannot drift from the code: a test
checks that `dialogs/intake.mmd` equals what this prints. Branch conditions are values
(`bot.engine.conditions`), so each edge is labelled with the condition's own description.
"""

from __future__ import annotations

import sys

from bot.engine.dialog import Dialog
from dialogs.intake import INTAKE


def mermaid(dialog: Dialog) -> str:
    lines = ["stateDiagram-v2", f"    [*] --> {dialog.first_step}"]
    for step in dialog.steps:
        lines.append(f"    {step.id}: {step.id} ({step.kind})")
    for step in dialog.steps:
        for branch in step.next:
            label = f" : {branch.when.describe()}" if branch.when else ""
            lines.append(f"    {step.id} --> {branch.to}{label}")
        for choice_id, exit_kind in step.exits.items():
            target = dialog.step_of_kind("ended" if exit_kind == "end" else "cancelled")
            lines.append(f"    {step.id} --> {target} : {choice_id}")
    # What the engine does for a choice's action, drawn as the steps it leads to.
    action_targets = {
        "edit": dialog.step_of_kind("edit"),
        "submit": dialog.step_of_kind("submitted"),
        "restart": dialog.first_step,
    }
    for step in dialog.steps:
        by_action = {c.action: c.id for c in step.choices if c.action in action_targets}
        for action, target in action_targets.items():
            if action in by_action and target is not None:
                lines.append(f"    {step.id} --> {target} : {by_action[action]}")
    edit, summary = dialog.step_of_kind("edit"), dialog.step_of_kind("summary")
    if edit is not None and summary is not None:
        lines.append(f"    {edit} --> {summary}")
    for kind in ("submitted", "ended", "cancelled"):
        final = dialog.step_of_kind(kind)
        if final is not None:
            lines.append(f"    {final} --> [*]")
    lines += [
        f"    note right of {dialog.first_step}",
        "        At every step: back, restart, help, privacy, language, cancel",
        "    end note",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(mermaid(INTAKE))
