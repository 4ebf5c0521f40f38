"""One whole intake conversation, as data, shared by every benchmark.

Each turn is what the person does: press a button (`choice`) or type (`text`). The same
script drives the engine directly, the web chat API, the Telegram webhook, and the baseline
frameworks (python-telegram-bot, aiogram), so every number is for the same conversation.
The path: poor care at a care home, typed provider (no directory match), contact by email,
summary, submit — 19 turns after the start, mixing buttons and typed text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from bot.intake.service import IntakeService

WHAT_HAPPENED = (
    "My mother was left in a wet bed for most of the night on the second floor. Staff said "
    "they were short of people. When I visited on Sunday the call bell was out of her reach "
    "and her water jug was empty. I asked the nurse in charge and she said the agency staff "
    "did not know the residents. This has happened three times this month."
)


@dataclass(frozen=True, slots=True)
class Turn:
    #: The step the conversation is at when the person does this.
    step: str
    kind: Literal["choice", "text"]
    value: str


SCRIPT: tuple[Turn, ...] = (
    Turn("welcome", "choice", "start"),
    Turn("experience", "choice", "poor"),
    Turn("service_type", "choice", "care_home"),
    Turn("provider", "text", "Oak House care home, Leeds LS1 4AP"),
    Turn("relationship", "choice", "friend_family"),
    Turn("when", "text", "Last Tuesday night, around 3am"),
    Turn("service_part", "choice", "skip"),
    Turn("what_happened", "text", WHAT_HAPPENED),
    Turn("share_with_service", "choice", "yes"),
    Turn("risk", "choice", "no"),
    Turn("authorities", "choice", "neither"),
    Turn("complaint", "choice", "not_yet"),
    Turn("complaint_info", "choice", "continue"),
    Turn("contact", "choice", "yes"),
    Turn("contact_name", "text", "Alex Smith"),
    Turn("contact_email", "text", "alex.smith@example.com"),
    Turn("contact_phone", "choice", "skip"),
    Turn("referral", "choice", "no"),
    Turn("summary", "choice", "submit"),
)

#: Choices offered at each step of the path (what a framework's button filter must accept).
STEP_CHOICES: dict[str, tuple[str, ...]] = {
    "welcome": ("start", "privacy", "language"),
    "experience": ("poor", "good", "mixed"),
    "service_type": (
        "hospital",
        "care_home",
        "home_care",
        "hospice",
        "gp",
        "dentist",
        "community",
        "clinic",
        "mental_health",
        "ambulance",
        "childrens_social_care",
        "other",
    ),
    "provider": (),
    "relationship": ("self", "friend_family", "work"),
    "when": ("skip",),
    "service_part": ("skip",),
    "what_happened": (),
    "share_with_service": ("yes", "no"),
    "risk": ("yes", "no", "not_sure"),
    "authorities": ("police", "council", "both", "neither"),
    "complaint": ("told", "formal", "not_yet"),
    "complaint_info": ("continue",),
    "contact": ("yes", "no"),
    "contact_name": (),
    "contact_email": ("skip",),
    "contact_phone": ("skip",),
    "alerts": ("yes", "no"),
    "referral": ("yes", "no"),
    "summary": ("submit", "edit", "restart"),
}

#: Steps that take typed text.
TEXT_STEPS = frozenset(
    {
        "provider",
        "when",
        "service_part",
        "what_happened",
        "contact_name",
        "contact_email",
        "contact_phone",
    }
)

#: Turns per conversation including the opening one (/start, or creating the conversation).
TURNS_PER_CONVERSATION = len(SCRIPT) + 1


async def web_conversations(
    service: IntakeService, count: int, *, at_once: int, numbers: Iterator[int]
) -> None:
    """`count` whole conversations of the script through `service` as the web chat runs them,
    in this process (no HTTP), `at_once` at a time: the start with its token, then each turn
    with the next message id of `numbers`."""
    from bot.engine.types import Inbound

    async def conversation() -> None:
        reply = await service.start(channel="web", locale_hints=("en", None), with_token=True)
        for turn in SCRIPT:
            await service.handle(
                reply.conversation_id,
                Inbound(turn.kind, turn.value),
                message_id=f"m{next(numbers)}",
                token=reply.token,
            )

    for first in range(0, count, at_once):
        await asyncio.gather(*(conversation() for _ in range(min(at_once, count - first))))
