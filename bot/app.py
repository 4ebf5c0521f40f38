"""The composition root: the one place that picks concrete adapters and wires them together.

Channels receive the service through `web.AppKey`s; the database engine lives exactly as long
as the aiohttp application (`cleanup_ctx`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

from aiohttp import web

from bot.appkeys import SERVICE, SETTINGS, STORAGE
from bot.config import Settings
from bot.engine.engine import Engine
from bot.i18n import Catalogs
from bot.lookups import DirectoryLookup
from bot.outbox import setup as delivery_setup
from bot.outbox.routes import acknowledgement_channel
from bot.ports import Storage
from bot.service import IntakeService
from dialogs.intake import INTAKE
from dialogs.languages import LANGUAGES, RTL_LOCALES
from storage.migrate import upgrade
from storage.sqlalchemy_storage import create_storage

log = logging.getLogger(__name__)

__all__ = ["SERVICE", "SETTINGS", "STORAGE", "build_app", "build_service"]


def build_catalogs(settings: Settings) -> Catalogs:
    return Catalogs(rtl=RTL_LOCALES, globals_={"privacy_url": settings.privacy_url})


def build_engine(catalogs: Catalogs) -> Engine:
    """The engine offers only the languages we have catalogs for, in the dialogue's order."""
    offered = [(code, name) for code, name in LANGUAGES if catalogs.supports(code)]
    return Engine(INTAKE, offered)


async def build_service(settings: Settings, *, migrate: bool = True) -> IntakeService:
    if migrate:
        await upgrade(settings.database_url)
    storage = await create_storage(settings.database_url)
    catalogs = build_catalogs(settings)
    directory = DirectoryLookup(storage.directory)
    service = IntakeService(
        storage,
        build_engine(catalogs),
        catalogs,
        directory,
        acknowledgement=partial(acknowledgement_channel, settings.delivery),
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


def build_app(
    settings: Settings, *, service: IntakeService | None = None, migrate: bool = True
) -> web.Application:
    from bot.channels import web as web_channel

    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        owned = service is None
        app[SERVICE] = (
            service if service is not None else await build_service(settings, migrate=migrate)
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
    return app
