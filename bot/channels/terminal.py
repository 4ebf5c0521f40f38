"""The terminal channel: the intake conversation on standard input and output (`intake chat`).

Choices degrade to numbered lines; a typed number, label or command word answers them, as in
the other channels (the engine reads them). The exit word clears the window and its scrollback
and ends at once (bot/intake/exit_help.py says what that cannot hide).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.engine.types import Inbound
from bot.intake.rendering import Reply
from bot.intake.service import IntakeService

GREETING = (
    "Type your answer, or the number of a choice. Commands: /back /restart /help /privacy "
    "/language /cancel /exit. Ctrl-D quits.\n"
)
#: ANSI: cursor home, clear the screen, clear the scrollback (xterm's "E3", which most
#: terminals honour); nothing of the chat is left to scroll back to.
CLEAR_SCREEN_AND_SCROLLBACK = "\x1b[H\x1b[2J\x1b[3J"


async def converse(
    service: IntakeService,
    *,
    locale_hints: tuple[str | None, ...] = (),
    read_line: Callable[[str], str] = input,
    write: Callable[[str], None] = print,
) -> int:
    """Hold one conversation until it ends or input ends; returns the exit status."""
    reply = await service.start(channel="terminal", locale_hints=locale_hints)
    write(GREETING)
    while True:
        if reply.exit:
            # Nothing is shown after it: someone may be looking at the screen.
            write(CLEAR_SCREEN_AND_SCROLLBACK)
            return 0
        write(render(reply))
        if reply.done and reply.survey_offer is None:
            return 0
        try:
            line = await asyncio.to_thread(read_line, "> ")
        except EOFError:
            write("")
            return 0
        if reply.survey_offer is not None:
            reply = await _answer_offer(service, reply.survey_offer.conversation_id, line)
            continue
        reply = await service.handle(reply.conversation_id, Inbound("text", line))


async def _answer_offer(service: IntakeService, conversation_id: str, line: str) -> Reply:
    """The survey offer is a simple y/n: "y" (or 1, yes) takes it, anything else declines."""
    if line.strip().lower() in _YES:
        return await service.start_survey(conversation_id)
    return await service.decline_survey(conversation_id)


_YES = frozenset(("y", "yes", "1"))


def render(reply: Reply) -> str:
    """A reply as terminal text: each message with its links ("Label: https://..."), its
    choices numbered, then the reference."""
    lines: list[str] = []
    for message in reply.messages:
        lines.append(message.text_with_links())
        lines += [f"  {n}. {choice.label}" for n, choice in enumerate(message.choices, start=1)]
    if reply.reference and reply.done:
        lines += ["", f"Reference: {reply.reference}"]
    offer = reply.survey_offer
    if offer is not None:
        lines += ["", offer.text, f"  y. {offer.start_label}", f"  n. {offer.decline_label}"]
    return "\n".join(lines) + "\n"
