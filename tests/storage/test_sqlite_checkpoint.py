"""A serving process copies SQLite's WAL into the database file beside the writer
(`storage.sqlite_checkpoint`), not in the commit that fills the WAL.

What a commit wrote is in the WAL; what a checkpoint copied is in the database file too.
A connection opened with `immutable=1` reads the database file alone, never the WAL, so it
tells the two apart: with the checkpointer a committed row reaches the file within a few
passes; with SQLite's own checkpoints it stays in the WAL until 1,000 pages have gathered.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from bot.ports import OutboxMessage
from storage import create_storage, upgrade
from storage.sqlalchemy_storage import SqlStorage
from storage.sqlite_checkpoint import WalCheckpointer

TOPIC = "telegram.send"


def in_database_file(path: Path, key: str) -> bool:
    """Whether the outbox row of `key` is in the database file itself (not only the WAL)."""
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?immutable=1", uri=True)) as db:
            row = db.execute("SELECT count(*) FROM outbox WHERE ordering_key = ?", (key,))
            return bool(row.fetchone()[0])
    except sqlite3.DatabaseError:  # a page being copied as we read: not there yet
        return False


async def commit_row(storage: SqlStorage, key: str) -> None:
    async with storage.unit_of_work() as uow:
        await uow.outbox.add([OutboxMessage(TOPIC, key, {"n": 1})])
        await uow.commit()


async def eventually(check: Callable[[], bool], within: float) -> bool:
    """Whether `check()` comes true within `within` seconds (a checkpointer's passes are
    a thread's, on its own clock)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return check()


@pytest.fixture
async def database(tmp_path: Path) -> Path:
    path = tmp_path / "intake.sqlite3"
    await upgrade(f"sqlite+aiosqlite:///{path}")
    return path


async def test_committed_pages_reach_the_database_file_beside_the_writer(database: Path) -> None:
    storage = await create_storage(f"sqlite+aiosqlite:///{database}", checkpoint_beside_writer=True)
    try:
        assert storage.checkpointer is not None and storage.checkpointer.running
        for n in range(3):  # each commit's pages are copied, not only the first's
            await commit_row(storage, f"chat-{n}")
            assert await eventually(partial(in_database_file, database, f"chat-{n}"), within=10.0)
    finally:
        await storage.close()
    assert storage.checkpointer is not None and not storage.checkpointer.running


async def test_without_it_a_commit_stays_in_the_wal(database: Path) -> None:
    """The control: SQLite's own checkpoint waits for 1,000 pages, so a few commits stay in
    the WAL (what the writer's commit would have copied later, in its own time)."""
    storage = await create_storage(f"sqlite+aiosqlite:///{database}")
    try:
        assert storage.checkpointer is None
        await commit_row(storage, "chat")
        assert not await eventually(partial(in_database_file, database, "chat"), within=0.5)
    finally:
        await storage.close()


async def test_the_serving_app_checkpoints_beside_its_writer(tmp_path: Path) -> None:
    from bot.app import build_service
    from bot.config import Settings

    path = tmp_path / "intake.sqlite3"
    service = await build_service(Settings(database_url=f"sqlite+aiosqlite:///{path}"))
    storage = service.storage
    assert isinstance(storage, SqlStorage)
    try:
        assert storage.checkpointer is not None and storage.checkpointer.running
    finally:
        await storage.close()


async def test_a_database_not_there_yet_is_waited_for_not_created(tmp_path: Path) -> None:
    path = tmp_path / "later.sqlite3"
    checkpointer = WalCheckpointer(path, interval=0.01)
    checkpointer.start()
    try:
        await asyncio.sleep(0.1)
        assert not path.exists() and checkpointer.passes == 0
        await upgrade(f"sqlite+aiosqlite:///{path}")
        assert await eventually(lambda: checkpointer.passes > 0, within=10.0)
    finally:
        await checkpointer.stop()
    assert not checkpointer.running


async def test_it_starts_again_after_a_stop(database: Path) -> None:
    checkpointer = WalCheckpointer(database, interval=0.01)
    checkpointer.start()
    await checkpointer.stop()
    passes = checkpointer.passes
    checkpointer.start()
    try:
        assert await eventually(lambda: checkpointer.passes > passes, within=10.0)
    finally:
        await checkpointer.stop()
    assert not checkpointer.running
