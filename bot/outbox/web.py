"""HTTP endpoints of the delivery side: the acknowledge link of alert emails, and /metrics.

The link is a GET that only shows a button (mail scanners and link previews open links; a
GET must change nothing); the button POSTs the same signed parameters, which record the
acknowledgement. Pages are plain HTML with everything escaped and no script.
"""

from __future__ import annotations

import html
import ipaddress
import time
from datetime import UTC, datetime
from urllib.parse import quote

from aiohttp import web

from bot import metrics
from bot.appkeys import SERVICE, SETTINGS, STORAGE
from bot.engine.types import T, Text
from bot.intake.reference import normalise_reference
from bot.outbox import texts
from bot.outbox.links import ACK_PATH, ack_link_valid
from bot.outbox.routes import SUBSCRIPTION_PATH
from bot.ports import AlertSubscription, DirectoryLocation

PAGE_CSP = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"


def add_routes(app: web.Application) -> None:
    app.router.add_get(ACK_PATH, ack_page, allow_head=False)
    app.router.add_post(ACK_PATH, ack_submit)
    app.router.add_get("/metrics", metrics_view, allow_head=False)
    for action in ("confirm", "stop"):
        path = f"{SUBSCRIPTION_PATH}/{action}"
        app.router.add_get(path, subscription_page, allow_head=False)
        app.router.add_post(path, subscription_action)


def _page(
    title: str,
    *paragraphs: str,
    form: str = "",
    status: int = 200,
    lang: str = "en",
    rtl: bool = False,
) -> web.Response:
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    direction = ' dir="rtl"' if rtl else ""
    document = (
        f'<!doctype html><html lang="{html.escape(lang)}"{direction}><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body><main>"
        f"<h1>{html.escape(title)}</h1>{body}{form}</main></body></html>"
    )
    response = web.Response(text=document, content_type="text/html", status=status)
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["Cache-Control"] = "no-store"
    return response


async def _link_key(request: web.Request) -> bytes:
    from bot.outbox.setup import DELIVERY

    routes = request.app[DELIVERY].routes
    if routes is None:
        raise web.HTTPServiceUnavailable()
    return await routes.link_key()


async def _checked(request: web.Request, values: dict[str, str]) -> tuple[str, str] | None:
    reference = normalise_reference(values.get("ref", ""))
    by = values.get("by", "")
    valid = ack_link_valid(
        await _link_key(request),
        values.get("ref", ""),
        by,
        values.get("exp", ""),
        values.get("sig", ""),
        int(time.time()),
    )
    return (reference, by) if valid and by else None


_INVALID = (
    "This link has expired or is not valid. Acknowledge the report from the staff inbox, or "
    "with: intake reports ack REFERENCE"
)


async def ack_page(request: web.Request) -> web.Response:
    values = dict(request.query)
    checked = await _checked(request, values)
    if checked is None:
        return _page("Link not valid", _INVALID, status=403)
    reference, by = checked
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(values.get(name, ""))}">'
        for name in ("ref", "by", "exp", "sig")
    )
    form = (
        f'<form method="post" action="{ACK_PATH}">{hidden}'
        f'<button type="submit">Acknowledge report {html.escape(reference)}</button></form>'
    )
    return _page(
        f"Urgent report {reference}",
        f"Acknowledging says that you ({by}) are taking charge of this report. "
        "Its escalation stops.",
        form=form,
    )


async def ack_submit(request: web.Request) -> web.Response:
    form = await request.post()
    values = {key: str(value) for key, value in form.items() if isinstance(value, str)}
    checked = await _checked(request, values)
    if checked is None:
        return _page("Link not valid", _INVALID, status=403)
    reference, by = checked
    async with request.app[STORAGE].unit_of_work() as uow:
        ack = await uow.reports.acknowledge(reference, by=by, at=datetime.now(UTC))
        await uow.commit()
    if ack is None:
        return _page("Report not found", f"There is no report {reference}.", status=404)
    if ack.by == by:
        said = f"You ({by}) acknowledged it at {ack.at:%Y-%m-%d %H:%M} UTC."
    else:
        said = f"It was already acknowledged by {ack.by} at {ack.at:%Y-%m-%d %H:%M} UTC."
    return _page(f"Report {reference} acknowledged", said)


def _allowed(remote: str | None, networks: tuple[str, ...]) -> bool:
    if remote is None:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n, strict=False) for n in networks)


async def metrics_view(request: web.Request) -> web.Response:
    """Prometheus text exposition; only for the addresses in INTAKE_METRICS_ALLOWED (the peer
    address itself: a forwarded-for header cannot open it)."""
    if not _allowed(request.remote, request.app[SETTINGS].delivery.metrics_allowed):
        raise web.HTTPForbidden()
    async with request.app[STORAGE].unit_of_work() as uow:
        stats = await uow.outbox.stats()
        unacknowledged = await uow.reports.count_unacknowledged_urgent()
    body = metrics.exposition(stats, unacknowledged)
    response = web.Response(body=body)
    response.headers["Content-Type"] = metrics.CONTENT_TYPE_LATEST
    response.headers["Cache-Control"] = "no-store"
    return response


# ---------------------------------------------------------------------- inspection alerts


async def _subscription_target(
    request: web.Request,
) -> tuple[str, str, AlertSubscription | None, DirectoryLocation | None]:
    action = request.path.rsplit("/", 1)[-1]
    token = request.query.get("token", "")
    subscription = None
    if token:
        async with request.app[STORAGE].unit_of_work() as uow:
            subscription = await uow.subscriptions.get(token)
    location = None
    if subscription is not None:
        location = await request.app[STORAGE].directory.get(subscription.location_id)
    return action, token, subscription, location


def _say(request: web.Request, locale: str, text: Text, **params: str) -> str:
    catalogs = request.app[SERVICE].catalogs
    return catalogs.render(T(text.msgid, **params), locale)


def _gone(request: web.Request) -> web.Response:
    catalogs = request.app[SERVICE].catalogs
    locale = catalogs.negotiate(request.headers.get("Accept-Language"))
    message = _say(request, locale, texts.LINK_GONE)
    return _page(message, status=404, lang=locale, rtl=catalogs.is_rtl(locale))


async def subscription_page(request: web.Request) -> web.Response:
    """GET: a button only (a mail scanner opening the link changes nothing)."""
    action, token, subscription, location = await _subscription_target(request)
    if subscription is None or (action == "confirm" and subscription.status == "confirmed"):
        return _gone(request)
    locale = subscription.locale
    service = location.name if location else subscription.location_id
    title, text = (
        (texts.START_TITLE, texts.START_TEXT)
        if action == "confirm"
        else (texts.STOP_TITLE, texts.STOP_TEXT)
    )
    label = _say(request, locale, title)
    form = (
        f'<form method="post" action="{SUBSCRIPTION_PATH}/{action}?token={quote(token)}">'
        f'<button type="submit">{html.escape(label)}</button></form>'
    )
    return _page(
        label,
        _say(request, locale, text, service=service),
        form=form,
        lang=locale,
        rtl=request.app[SERVICE].catalogs.is_rtl(locale),
    )


async def subscription_action(request: web.Request) -> web.Response:
    """POST: confirm, or stop (also RFC 8058 one-click: `List-Unsubscribe=One-Click`)."""
    action, token, subscription, location = await _subscription_target(request)
    if subscription is None:
        return _gone(request)
    async with request.app[STORAGE].unit_of_work() as uow:
        if action == "confirm":
            done = await uow.subscriptions.confirm(token, now=datetime.now(UTC))
        else:
            done = await uow.subscriptions.remove(token)
        await uow.commit()
    if done is None:
        return _gone(request)
    locale = subscription.locale
    service = location.name if location else subscription.location_id
    said = texts.STARTED if action == "confirm" else texts.STOPPED
    title = texts.START_TITLE if action == "confirm" else texts.STOP_TITLE
    return _page(
        _say(request, locale, title),
        _say(request, locale, said, service=service),
        lang=locale,
        rtl=request.app[SERVICE].catalogs.is_rtl(locale),
    )
