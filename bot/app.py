"""The composition root: the one place that picks concrete adapters and wires them together.

Channels receive the service through `web.AppKey`s; the database engine lives exactly as long
as the aiohttp application (`cleanup_ctx`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from functools import partial
from pathlib import Path

from aiohttp import web

from bot.appkeys import SERVICE, SETTINGS, STORAGE
from bot.config import Settings
from bot.engine.engine import Engine
from bot.i18n import Catalogs
from bot.intake.lookups import DirectoryLookup
from bot.intake.service import IntakeService, utcnow
from bot.logging_setup import (
    install_redaction,
    quiet_libraries,
    secrets_in_environment,
    url_password,
)
from bot.metrics import record_write_batch
from bot.outbox import setup as delivery_setup
from bot.outbox.routes import acknowledgement_channel
from bot.ports import Storage
from bot.staff.config import StaffSettings
from dialogs.intake import EMAIL_ALERTS, INTAKE
from dialogs.languages import LANGUAGES, RTL_LOCALES
from dialogs.survey import SURVEY
from storage.engine import POOL_SIZE
from storage.migrate import upgrade
from storage.sqlalchemy_storage import create_storage

log = logging.getLogger(__name__)

__all__ = ["SERVICE", "SETTINGS", "STORAGE", "build_app", "build_service"]


def build_catalogs(settings: Settings) -> Catalogs:
    return Catalogs(
        rtl=RTL_LOCALES,
        globals_={"privacy_url": settings.privacy_url, "contact_phone": settings.contact_phone},
    )


def build_engine(catalogs: Catalogs, settings: Settings) -> Engine:
    """The engine offers only the languages we have catalogs for, in the dialogue's order,
    and only the questions this deployment can act on (its switches)."""
    offered = [(code, name) for code, name in LANGUAGES if catalogs.supports(code)]
    switches = {EMAIL_ALERTS: settings.delivery.inspection_alerts_deliverable}
    return Engine(INTAKE, offered, switches)


def build_survey_engine() -> Engine:
    """The survey about the chat, offered after a report is sent."""
    return Engine(SURVEY)


async def build_service(
    settings: Settings,
    *,
    migrate: bool = True,
    clock: Callable[[], datetime] = utcnow,
    keep_turns: bool = True,
    pool_size: int = POOL_SIZE,
) -> IntakeService:
    """`clock` (aware UTC) is shared by the service and its storage, so that tests can move
    time for both (idle conversations, the window replies are kept for). `keep_turns`: this
    process serves every turn of its conversations (not one of several workers on a port), so
    it keeps what its turns wrote for their next turns (storage.turn_cache). `pool_size`: its
    PostgreSQL connections for turns (a serving worker's share: `bot.cli._serving_pool_size`)."""
    if migrate:
        await upgrade(settings.database_url)
    storage = await create_storage(
        settings.database_url,
        clock=clock,
        keep_turns=keep_turns,
        pool_size=pool_size,
        checkpoint_beside_writer=True,
        on_write_batch=record_write_batch,
    )
    catalogs = build_catalogs(settings)
    directory = DirectoryLookup(storage.directory)
    service = IntakeService(
        storage,
        build_engine(catalogs, settings),
        catalogs,
        directory,
        clock=clock,
        acknowledgement=partial(acknowledgement_channel, settings.delivery),
        links=settings.links,
        survey=build_survey_engine(),
    )
    if settings.directory_csv is not None:
        await import_directory_if_empty(storage, settings.directory_csv)
    await directory.refresh(force=True)
    return service


async def import_directory_if_empty(storage: Storage, csv_path: Path) -> None:
    """First start: load the directory file when the table is empty (a real monthly file or
    the shared sample). Later imports are explicit: `intake directory import`."""
    if await storage.directory.all():
        return
    if not await asyncio.to_thread(csv_path.exists):
        log.warning(
            "no directory loaded and %s is missing; import the regulator's monthly file with "
            "`intake directory import FILE.csv`",
            csv_path,
        )
        return
    from bot.directory import parse_directory_csv

    parsed = await asyncio.to_thread(parse_directory_csv, csv_path)
    result = await storage.directory.replace_all(parsed.locations, produced_on=parsed.produced_on)
    log.info("directory imported from %s: %d locations", csv_path.name, result.total)


def protect_logs(settings: Settings) -> None:
    """No secret in any log line, however the app was started (`intake serve` configures
    logging from the environment; a test or an embedding process passes Settings)."""
    install_redaction(
        [
            settings.telegram_token,
            settings.telegram_webhook_secret,
            url_password(settings.database_url),
            *secrets_in_environment(os.environ),
        ]
    )
    quiet_libraries(logging.getLogger().getEffectiveLevel())


def build_app(
    settings: Settings,
    *,
    service: IntakeService | None = None,
    migrate: bool = True,
    staff: StaffSettings | None = None,
    keep_turns: bool = True,
    pool_size: int = POOL_SIZE,
) -> web.Application:
    """The whole web application; `keep_turns` and `pool_size` as `build_service`'s (False
    for one of several workers sharing a port; the worker's share of connections)."""
    from bot.channels.web import api as web_channel

    protect_logs(settings)
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        owned = service is None
        app[SERVICE] = (
            service
            if service is not None
            else await build_service(
                settings, migrate=migrate, keep_turns=keep_turns, pool_size=pool_size
            )
        )
        app[STORAGE] = app[SERVICE].storage
        yield
        if owned:
            await app[SERVICE].storage.close()

    app.cleanup_ctx.append(lifetime)
    web_channel.setup(app)
    delivery_setup.setup(app)
    if settings.telegram_token:
        from bot.channels import telegram as telegram_channel

        telegram_channel.setup(app)
    mount_staff(app, staff if staff is not None else StaffSettings.from_env())
    return app


def mount_staff(app: web.Application, staff: StaffSettings) -> None:
    """The staff web application under /staff/ (its own sub-application and middlewares),
    unless INTAKE_STAFF_ENABLED=false."""
    if staff.enabled:
        from sqlalchemy.ext.asyncio import AsyncEngine

        from bot.staff.application import mount

        def engine() -> AsyncEngine:
            found = getattr(app[STORAGE], "engine", None)
            if not isinstance(found, AsyncEngine):
                raise RuntimeError("the staff application needs the SQL storage")
            return found

        mount(app, staff, engine)
