"""The staff application assembled: every view module's routes, the middlewares, the
templates and assets, and the mount under /staff/ on the main application.

The views depend on `bot.staff.web` (the route table's types, the middlewares, rendering);
only this module knows every view, so the dependency runs one way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aiohttp_jinja2
import jinja2
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.ratelimit import TokenBuckets
from bot.staff import oidc, views_admin, views_auth, views_queue, views_report
from bot.staff.config import StaffSettings
from bot.staff.views_auth import govuk_stylesheet
from bot.staff.web import (
    SIGN_IN_LIMITER,
    STAFF_APP,
    STAFF_SETTINGS,
    STAFF_STORE,
    TEMPLATES,
    Access,
    Route,
    allowed_networks,
    security_headers,
    sessions,
)
from storage.staff import StaffStore

log = logging.getLogger(__name__)


def routes() -> list[Route]:
    return [
        *views_auth.ROUTES,
        *oidc.ROUTES,
        *views_queue.ROUTES,
        *views_report.ROUTES,
        *views_admin.ROUTES,
    ]


def build_staff_app(
    settings: StaffSettings, store_factory: Callable[[], StaffStore]
) -> web.Application:
    app = web.Application(middlewares=[security_headers, allowed_networks, sessions])
    app[STAFF_SETTINGS] = settings
    app[SIGN_IN_LIMITER] = TokenBuckets.per_minute(settings.sign_ins_per_minute)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(default=True),
    )

    async def open_store(app: web.Application) -> None:
        app[STAFF_STORE] = store_factory()

    app.on_startup.append(open_store)
    for route in routes():
        route.handler.staff_access = route.access  # type: ignore[attr-defined]
        app.router.add_route(route.method, route.path, route.handler, name=route.name)

    app.router.add_get("/assets/govuk-frontend.min.css", govuk_stylesheet, name="stylesheet")
    govuk_stylesheet.staff_access = Access(None)  # type: ignore[attr-defined]
    assets = settings.assets_dir / "assets"
    if assets.is_dir():
        app.router.add_static("/assets/", assets, name="assets")
    else:
        log.warning("GOV.UK Frontend is not installed (%s): run `make staff-assets`", assets)
    return app


def mount(
    parent: web.Application, settings: StaffSettings, engine: Callable[[], AsyncEngine]
) -> None:
    """Serve the staff application under /staff/ on `parent`, sharing its database engine;
    `engine` is called once the parent's own start-up has opened the storage."""
    staff = build_staff_app(settings, lambda: StaffStore(engine()))
    parent[STAFF_APP] = staff

    async def to_staff(request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect("/staff/")

    # Before the sub-application, which would otherwise claim "/staff" itself (as a 404).
    parent.router.add_get("/staff", to_staff)
    parent.add_subapp("/staff", staff)
