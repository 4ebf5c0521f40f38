"""What the person receives, in their language, from the same catalogs as the chat.

An acknowledgement carries the reference and what happens next, never what the person told
us (the spec: an email may be read by someone else, or kept for years in a mailbox).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.engine.types import T, Text
from bot.i18n import Catalogs

ACK_SUBJECT = T("Your report to us: reference {reference}")
ACK_THANKS = T(
    "Thank you for telling us about care. We have your report. "
    "Your reference number is {reference}."
)
# The same words as the chat's confirmation (dialogs/intake.py), so they share translations.
WHAT_HAPPENS_NEXT = T(
    "What happens next: we read every report. We look at urgent ones first. We may "
    "ask the service to respond, meet its managers, share what you told us with "
    "other organisations, or inspect it. We can also warn or fine a service, or put "
    "conditions on it. In the worst cases we can close it."
)
MAY_NOT_HEAR_MORE = T("You may not hear more from us, but we will still use what you told us.")
DANGER = T("If someone is in danger right now, call 999.")
ACK_PRIVATE = T(
    "To keep what you told us private, this email does not repeat it. "
    "Please do not reply to this email."
)
ACK_SMS = T(
    "We got your report. Your reference number is {reference}. "
    "If someone is in danger right now, call 999."
)


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    body: str


def _with_reference(text: Text, reference: str) -> Text:
    return T(text.msgid, reference=reference)


def acknowledgement_email(catalogs: Catalogs, locale: str, reference: str) -> RenderedEmail:
    def say(text: Text) -> str:
        return catalogs.render(text, locale)

    paragraphs = [
        say(_with_reference(ACK_THANKS, reference)),
        say(WHAT_HAPPENS_NEXT),
        say(MAY_NOT_HEAR_MORE),
        say(DANGER),
        say(ACK_PRIVATE),
    ]
    return RenderedEmail(
        subject=say(_with_reference(ACK_SUBJECT, reference)),
        body="\n\n".join(paragraphs) + "\n",
    )


def acknowledgement_sms(catalogs: Catalogs, locale: str, reference: str) -> str:
    return catalogs.render(_with_reference(ACK_SMS, reference), locale)


# ---------------------------------------------------------------------- inspection alerts

CONFIRM_SUBJECT = T("Please confirm your email alerts")
CONFIRM_BODY = T(
    "You asked for an email when we publish a new inspection report on {service}. "
    "To start these emails, open this link and press the button: {link}"
)
CONFIRM_IGNORE = T(
    "If you did not ask for this, you can ignore this email. We will not send you any alerts."
)
INSPECTION_SUBJECT = T("New inspection report: {service}")
INSPECTION_BODY = T(
    "We have published a new inspection report on {service}. You can read it here: {link}"
)
STOP_LINE = T("To stop these emails, open this link: {link}")
START_TITLE = T("Start email alerts")
START_TEXT = T(
    "Press the button to get an email when we publish a new inspection report on {service}."
)
STARTED = T("Thank you. We will email you when we publish a new inspection report on {service}.")
STOP_TITLE = T("Stop email alerts")
STOP_TEXT = T("Press the button to stop emails about new inspection reports on {service}.")
STOPPED = T(
    "You will not get any more emails about {service}. "
    "We have deleted your email address from this list."
)
LINK_GONE = T("This link does not work any more. It may have been used already.")


def alert_confirmation_email(
    catalogs: Catalogs, locale: str, service: str, confirm_url: str
) -> RenderedEmail:
    def say(text: Text, **params: str) -> str:
        return catalogs.render(T(text.msgid, **params), locale)

    return RenderedEmail(
        subject=say(CONFIRM_SUBJECT),
        body=say(CONFIRM_BODY, service=service, link=confirm_url)
        + "\n\n"
        + say(CONFIRM_IGNORE)
        + "\n",
    )


def inspection_alert_email(
    catalogs: Catalogs, locale: str, service: str, report_url: str, stop_url: str
) -> RenderedEmail:
    def say(text: Text, **params: str) -> str:
        return catalogs.render(T(text.msgid, **params), locale)

    return RenderedEmail(
        subject=say(INSPECTION_SUBJECT, service=service),
        body=say(INSPECTION_BODY, service=service, link=report_url)
        + "\n\n"
        + say(STOP_LINE, link=stop_url)
        + "\n",
    )
