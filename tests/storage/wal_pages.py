"""What a SQLite commit wrote: the b-trees whose pages went to the WAL (tests only)."""

from __future__ import annotations

import contextlib
import sqlite3
import struct
from pathlib import Path


def last_commit_pages(database: Path) -> set[str]:
    """The b-trees (tables and indexes, by name) whose pages the database's last commit wrote
    to its WAL: the frames after the commit frame before it, read from the WAL file's frame
    headers (page number, and the database size on a commit's last frame), named by dbstat."""
    wal = (database.parent / (database.name + "-wal")).read_bytes()
    page_size, salts = struct.unpack(">I", wal[8:12])[0], wal[16:24]
    frames: list[tuple[int, bool]] = []
    offset = 32
    while offset + 24 + page_size <= len(wal) and wal[offset + 8 : offset + 16] == salts:
        page, size_after_commit = struct.unpack(">II", wal[offset : offset + 8])
        frames.append((page, size_after_commit != 0))
        offset += 24 + page_size
    commits = [index for index, (_, commit) in enumerate(frames) if commit]
    assert commits, "no commit in the WAL"
    first = commits[-2] + 1 if len(commits) > 1 else 0
    written = {page for page, _ in frames[first : commits[-1] + 1]}
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as reader:
        owners = dict(reader.execute("SELECT pageno, name FROM dbstat").fetchall())
    return {owners.get(page, f"page {page}") for page in written}
