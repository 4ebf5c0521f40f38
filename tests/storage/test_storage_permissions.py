"""A SQLite database made by us is readable by its owner only (it holds people's reports)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from storage import create_storage, upgrade


@pytest.mark.parametrize("umask", [0o022, 0o000])
async def test_sqlite_file_and_directory_are_private(tmp_path: Path, umask: int) -> None:
    directory = tmp_path / "var"
    url = f"sqlite+aiosqlite:///{directory / 'intake.sqlite3'}"
    previous = os.umask(umask)
    try:
        await upgrade(url)
        storage = await create_storage(url)
        async with storage.unit_of_work() as uow:
            await uow.reports.count()  # writes nothing, but opens WAL files
        await storage.close()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


async def test_an_existing_directory_is_left_as_it_is(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    url = f"sqlite+aiosqlite:///{tmp_path / 'intake.sqlite3'}"
    await upgrade(url)
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "intake.sqlite3").stat().st_mode) == 0o600
