"""What a turn produces, in the person's language, for any channel to show.

A `Reply` is the turn's result; each channel turns it into its own form (the web API's JSON
in `bot.channels.web.wire`, Telegram's messages and keyboards, terminal lines). The message
record (`RenderedMessage.to_record`) is the one stored shape of a message: transcript lines,
outbox payloads for the text channels and the replies kept for repeated message ids all hold
it. A record written by an older version still reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RenderedChoice:
    id: str
    label: str


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    text: str
    choices: tuple[RenderedChoice, ...] = ()
    input: str = "none"

    def to_record(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "choices": [{"id": c.id, "label": c.label} for c in self.choices],
            "input": self.input,
        }

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> RenderedMessage:
        return cls(
            data["text"],
            tuple(RenderedChoice(c["id"], c["label"]) for c in data.get("choices", [])),
            data.get("input", "none"),
        )


@dataclass(slots=True)
class Reply:
    conversation_id: str
    locale: str
    step: str
    messages: list[RenderedMessage]
    done: bool
    reference: str | None
    #: The person's language is written right to left.
    rtl: bool = False
    #: Only on creation: the web token, never stored in clear.
    token: str | None = None
    transcript: list[dict[str, Any]] | None = None
    #: True when this reply was replayed for a repeated message id.
    replayed: bool = False

    def to_record(self) -> dict[str, Any]:
        """The reply as kept for a repeated message id (never the token or transcript)."""
        return {
            "conversation_id": self.conversation_id,
            "locale": self.locale,
            "rtl": self.rtl,
            "step": self.step,
            "messages": [m.to_record() for m in self.messages],
            "done": self.done,
            "reference": self.reference,
        }

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Reply:
        # Replies kept before 2026-12 stored the web API's body, with "dir" for direction.
        rtl = data["rtl"] if "rtl" in data else data.get("dir") == "rtl"
        return cls(
            conversation_id=data["conversation_id"],
            locale=data["locale"],
            step=data["step"],
            messages=[RenderedMessage.from_record(m) for m in data["messages"]],
            done=data["done"],
            reference=data.get("reference"),
            rtl=bool(rtl),
        )
