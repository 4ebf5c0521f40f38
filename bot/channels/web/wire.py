"""The web chat API's JSON body for a turn's reply (the contract in intake-spec.md).

Field names here are a public contract: the widget, partners' frontends and tests read
them. Only additive changes; `bot.channels.web.openapi` describes the same shape and a test
keeps the two true to each other.
"""

from __future__ import annotations

from typing import Any

from bot.intake.rendering import Reply


def reply_body(reply: Reply) -> dict[str, Any]:
    body: dict[str, Any] = {
        "conversation_id": reply.conversation_id,
        "locale": reply.locale,
        "dir": "rtl" if reply.rtl else "ltr",
        "step": reply.step,
        "messages": [m.to_record() for m in reply.messages],
        "done": reply.done,
        "reference": reply.reference,
    }
    if reply.summary:
        # The spec: "the summary step's reply carries" its rows. The same rows are on the
        # message that shows them (and so in the transcript of a reloaded page).
        body["summary"] = [row.to_record() for row in reply.summary]
    if reply.survey_offer is not None:
        # After the report is sent: the survey about the chat, for this conversation.
        body["survey_offer"] = reply.survey_offer.to_record()
    if reply.exit:
        # The person typed the exit word: the widget leaves the page as its Exit button does.
        body["exit"] = True
    if reply.token is not None:
        body["token"] = reply.token
    if reply.transcript is not None:
        body["transcript"] = reply.transcript
    return body
