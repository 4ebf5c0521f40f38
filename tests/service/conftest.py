from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import build_service
from bot.config import Settings
from bot.service import IntakeService
from tests.fixtures import SMALL_DIRECTORY


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[IntakeService]:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/intake.sqlite3",
        directory_csv=SMALL_DIRECTORY,
    )
    svc = await build_service(settings)
    yield svc
    await svc.storage.close()
