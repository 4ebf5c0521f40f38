"""A SQLite database made by us is readable by its owner only (it holds people's reports)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from storage import create_storage, upgrade


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _private_tree(directory: Path) -> dict[str, int]:
    return {path.name: _mode(path) for path in directory.iterdir()}


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
    assert _mode(directory) == 0o700
    modes = _private_tree(directory)
    assert modes and set(modes.values()) == {0o600}, modes


async def test_an_existing_directory_is_left_as_it_is(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    url = f"sqlite+aiosqlite:///{tmp_path / 'intake.sqlite3'}"
    await upgrade(url)
    assert _mode(tmp_path) == 0o755
    assert _mode(tmp_path / "intake.sqlite3") == 0o600
