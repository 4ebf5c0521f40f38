"""What a turn produces, in the person's language, for any channel to show.

A `Reply` is the turn's result; each channel turns it into its own form (the web API's JSON
in `bot.channels.web.wire`, Telegram's messages and keyboards, terminal lines). The message
record (`RenderedMessage.to_record`) is the one stored shape of a message: transcript lines,
outbox payloads for the text channels and the replies kept for repeated message ids all hold
it. A record written by an older version still reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.ports import OutboxMessage


@dataclass(frozen=True, slots=True)
class RenderedChoice:
    id: str
    label: str


@dataclass(frozen=True, slots=True)
class RenderedLink:
    """A link in the person's language; `url` is always https (the service drops any other)."""

    label: str
    url: str


@dataclass(frozen=True, slots=True)
class RenderedSummaryRow:
    """One answer on the summary, in the person's language (the API's `summary` rows)."""

    step: str
    label: str
    value: str
    changeable: bool

    def to_record(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "label": self.label,
            "value": self.value,
            "changeable": self.changeable,
        }


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    text: str
    choices: tuple[RenderedChoice, ...] = ()
    input: str = "none"
    links: tuple[RenderedLink, ...] = ()
    #: The summary step's rows (kept only when there are some: older records have none).
    summary: tuple[RenderedSummaryRow, ...] = ()
    #: The answer a question being changed has now (the person's own words): the widget
    #: puts it in the box. Erased with the conversation like every other copy of the answers.
    value: str | None = None

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "text": self.text,
            "choices": [{"id": c.id, "label": c.label} for c in self.choices],
            "input": self.input,
        }
        # Only when there are some: a message without links keeps its old shape.
        if self.links:
            record["links"] = [{"label": k.label, "url": k.url} for k in self.links]
        if self.summary:
            record["summary"] = [row.to_record() for row in self.summary]
        if self.value is not None:
            record["value"] = self.value
        return record

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> RenderedMessage:
        return cls(
            data["text"],
            tuple(RenderedChoice(c["id"], c["label"]) for c in data.get("choices", [])),
            data.get("input", "none"),
            tuple(RenderedLink(k["label"], k["url"]) for k in data.get("links", [])),
            summary=tuple(
                RenderedSummaryRow(r["step"], r["label"], r["value"], bool(r["changeable"]))
                for r in data.get("summary", [])
            ),
            value=data.get("value"),
        )

    def text_with_links(self) -> str:
        """The text with each link on its own line as "Label: https://...", for channels
        that show plain text (Telegram, the terminal)."""
        lines = [f"{k.label}: {k.url}" for k in self.links]
        return "\n".join([self.text, *lines]) if lines else self.text


#: The survey offer's choice ids. In text channels the offered conversation's id follows
#: after a colon ("survey_start:<id>"): by then the chat may have moved on.
SURVEY_START = "survey_start"
SURVEY_DECLINE = "survey_decline"

#: A reply's outbox row names, under this key, the chat message whose button the person
#: tapped: the channel's sender takes that message's buttons away as the reply goes.
TAPPED_MESSAGE_ID = "tapped_message_id"


@dataclass(frozen=True, slots=True)
class SurveyOffer:
    """After a report is sent: the optional survey about the chat, for the conversation that
    sent it (`conversation_id`), in the person's language."""

    conversation_id: str
    text: str
    start_label: str
    decline_label: str

    def message(self) -> RenderedMessage:
        """The offer as a message with two buttons, for channels that show messages only."""
        return RenderedMessage(
            self.text,
            (
                RenderedChoice(f"{SURVEY_START}:{self.conversation_id}", self.start_label),
                RenderedChoice(f"{SURVEY_DECLINE}:{self.conversation_id}", self.decline_label),
            ),
            "choice",
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "text": self.text,
            "choices": [
                {"id": SURVEY_START, "label": self.start_label},
                {"id": SURVEY_DECLINE, "label": self.decline_label},
            ],
        }

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> SurveyOffer:
        labels = {c["id"]: c["label"] for c in data["choices"]}
        return cls(
            data["conversation_id"], data["text"], labels[SURVEY_START], labels[SURVEY_DECLINE]
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
    #: The survey about the chat, offered once the report is sent (until taken or declined).
    survey_offer: SurveyOffer | None = None
    #: Outbox rows of this reply claimed in the turn's own transaction, for the channel's
    #: sender in this process to send right after the commit (`Outbox.add(claim_for=...)`).
    claimed: list[OutboxMessage] = field(default_factory=list)
    #: The person typed the exit word: the conversation is closed and erased, and a channel
    #: that can clears what its screen shows (the widget leaves the page, the terminal clears).
    exit: bool = False

    @property
    def summary(self) -> tuple[RenderedSummaryRow, ...]:
        """The summary's rows when this reply shows the summary (from its message, so a
        replayed reply has them too), else none."""
        return next((m.summary for m in self.messages if m.summary), ())

    def to_record(self, *, words: bool = True) -> dict[str, Any]:
        """The reply as kept for a repeated message id (never the token or transcript).
        Without `words`, no messages and no survey offer: what is kept for a reply that the
        outbox sends (`IntakeService._kept`)."""
        record: dict[str, Any] = {
            "conversation_id": self.conversation_id,
            "locale": self.locale,
            "rtl": self.rtl,
            "step": self.step,
            "messages": [m.to_record() for m in self.messages] if words else [],
            "done": self.done,
            "reference": self.reference,
            **({"exit": True} if self.exit else {}),
        }
        if words and self.survey_offer is not None:
            record["survey_offer"] = self.survey_offer.to_record()
        return record

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
            survey_offer=(
                SurveyOffer.from_record(data["survey_offer"]) if "survey_offer" in data else None
            ),
            exit=bool(data.get("exit", False)),
        )
