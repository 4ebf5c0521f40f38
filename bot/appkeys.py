"""Typed keys for what the composition root puts on the aiohttp application.

Channels import these, never `bot.app`: the app knows the concrete adapters (storage,
dialogs), and channels must stay independent of them.
"""

from __future__ import annotations

from aiohttp import web

from bot.config import Settings
from bot.intake.service import IntakeService
from bot.ports import Storage

SETTINGS = web.AppKey("settings", Settings)
STORAGE = web.AppKey("storage", Storage)
SERVICE = web.AppKey("service", IntakeService)
