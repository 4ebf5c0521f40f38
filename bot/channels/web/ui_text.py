"""The web widget's own words: its buttons, labels, status texts and error messages.

The dialogue is translated by the service; this is the widget's chrome around it, translated
with the same gettext catalogs, so a person who chose Polish or Arabic does not see English
buttons around a Polish or Arabic conversation. The keys are those of the `DEFAULT_TEXT` object
in `bot/static/chat.js` (the chat, in its frame), which keeps the English as its built-in
fallback: change both together (a test compares them). The loader on the embedding page,
`bot/static/widget.js`, uses a few of them too (launcher, title, close, notAllowed...).

`GET /api/v1/ui-text?locale=pl` answers `{"locale", "dir", "exit_url", "text": {key: string}}`
(`exit_url`: where "Exit this page" goes, INTAKE_EXIT_URL). Nothing in it
is personal, so it may be cached for a few minutes.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from aiohttp import hdrs, web

from bot.appkeys import SERVICE, SETTINGS
from bot.channels.web.http import json_response
from bot.engine.types import T, Text

UI_TEXT_PATH = "/api/v1/ui-text"
#: Locale codes and Accept-Language values longer than this are not real ones.
MAX_LOCALE_HINT = 200
CACHE_SECONDS = 300

#: Key → message. Plain and short: these are buttons and labels, read at a glance.
UI_TEXT: Mapping[str, Text] = MappingProxyType(
    {
        "launcher": T("Tell us about care"),
        "title": T("Tell us about care"),
        "close": T("Close chat"),
        "toolbar": T("Chat controls"),
        "back": T("Back"),
        "restart": T("Start again"),
        "language": T("Language"),
        "help": T("Help"),
        "privacy": T("Privacy"),
        "cancel": T("Cancel"),
        "cancelTitle": T("Stop and delete everything?"),
        "cancelText": T(
            "If you stop now, we delete your answers and this chat. We keep nothing. "
            "You cannot undo this."
        ),
        "cancelConfirm": T("Yes, stop and delete"),
        "cancelKeep": T("No, carry on"),
        "conversation": T("Conversation"),
        "answers": T("Your options"),
        "you": T("You said:"),
        "answerLabel": T("Your answer"),
        "placeholder": T("Type your answer"),
        "send": T("Send"),
        "hint": T("Press Enter to send. Press Shift and Enter for a new line."),
        "referenceLabel": T("Your reference number"),
        "copy": T("Copy"),
        "copied": T("Copied"),
        "copiedStatus": T("Reference number copied."),
        "copyFailed": T("Could not copy. Please write the number down."),
        "newConversation": T("Start a new conversation"),
        "retry": T("Retry"),
        "notSent": T("Not sent — check your connection. Retrying…"),
        "notSentManual": T("Not sent — check your connection, then choose Retry."),
        "cannotConnect": T(
            "We could not connect to the chat service. Check your connection, then choose Retry."
        ),
        "busy": T("The service is busy. Trying again…"),
        "rateLimited": T("Please wait a moment. Trying again shortly…"),
        "expired": T("This conversation has ended or expired. You can start a new one."),
        "notAllowed": T("This chat cannot be used on this website."),
        "notAllowedLink": T("Use the chat on our own website instead"),
        "tooLong": T("Your message is too long. Please make it shorter."),
        "serverError": T("Something went wrong. Please try again."),
        "exit": T("Exit this page"),
        "exitHint": T(
            "Exit, or press Shift 3 times, to leave this chat at once. "
            "It does not delete your browser history."
        ),
        "danger": T("In danger now? Call 999"),
        "restartTitle": T("Start again from the beginning?"),
        "restartText": T(
            "If you start again, we delete the answers you have given so far. You cannot undo this."
        ),
        "restartConfirm": T("Yes, start again"),
        # A summary row's button; its accessible name adds the row's label ("Change When").
        "change": T("Change"),
    }
)


def ui_text(request: web.Request) -> dict[str, object]:
    """The widget's words in the best locale for `?locale=` then Accept-Language, else English."""
    catalogs = request.app[SERVICE].catalogs
    hints = (request.query.get("locale"), request.headers.get(hdrs.ACCEPT_LANGUAGE))
    locale = catalogs.negotiate(*(h[:MAX_LOCALE_HINT] if h else None for h in hints))
    return {
        "locale": locale,
        "dir": "rtl" if catalogs.is_rtl(locale) else "ltr",
        "exit_url": request.app[SETTINGS].exit_url,
        "text": {key: catalogs.render(text, locale) for key, text in UI_TEXT.items()},
    }


async def get_ui_text(request: web.Request) -> web.Response:
    return json_response(ui_text(request))


async def cache_ui_text(request: web.Request, response: web.StreamResponse) -> None:
    """A response-prepare hook, registered after the channel's own (which marks every API
    response `no-store`): a successful ui-text answer may be cached; it varies by the
    Accept-Language header (used when `?locale=` is missing or unknown) and by Origin."""
    if request.path != UI_TEXT_PATH or response.status != 200:
        return
    response.headers[hdrs.CACHE_CONTROL] = f"public, max-age={CACHE_SECONDS}"
    vary = [v.strip() for v in response.headers.get(hdrs.VARY, "").split(",") if v.strip()]
    if not any(v.lower() == "accept-language" for v in vary):
        vary.append("Accept-Language")
    response.headers[hdrs.VARY] = ", ".join(vary)
