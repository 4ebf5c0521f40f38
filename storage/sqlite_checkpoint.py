"""Copying SQLite's WAL into the database file beside the writer, not inside its commits.

In WAL mode a commit appends pages to the `-wal` file; a checkpoint copies them into the
database file and syncs it. By default SQLite checkpoints in the committing connection once
the WAL holds 1,000 pages (`wal_autocheckpoint`): the commit that crosses it also copies every
page changed since the last checkpoint and syncs the database file before it returns. Our
single writer is that connection, so every turn queued behind it waited for the copy, a few
times a second at half load (BENCHMARKS.md, "The WAL's checkpoints beside the writer").

`WalCheckpointer` runs passive checkpoints from a connection of its own, on a thread of its
own, every `interval` seconds: the pages are copied while the writer goes on committing
(SQLite lets one checkpointer run beside the writer and readers; a passive checkpoint waits
for neither and copies what no open snapshot still needs). The writer's own automatic
checkpoint stays on, as SQLite's bound on the WAL: only the writer can start the WAL again
from its beginning, which it does once every page is copied, and when its checkpoint comes
due it now finds little left to copy. Python's sqlite3 releases the GIL while SQLite works,
so the copy does not hold up the event loop either.

A pass with nothing to copy only reads the WAL's index (shared memory): an idle server pays
about 10 µs twenty times a second. Nothing here reads a row; nothing is logged but the
error's kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

#: Seconds between passes. At half of a saturated SQLite load (about 400 turns a second, ten
#: pages each) a pass copies a fifth of what the writer's checkpoint copied.
CHECKPOINT_INTERVAL_SECONDS = 0.05


class WalCheckpointer:
    """Passive checkpoints of the SQLite database at `path`, on a daemon thread, until
    `stop`. The database must exist (migrations create it): the connection is opened
    read-write, never created, and a file not there yet is tried again at the next pass."""

    def __init__(self, path: Path, *, interval: float = CHECKPOINT_INTERVAL_SECONDS) -> None:
        self.path = path
        self.interval = interval
        #: Passes that ran a checkpoint (tests, instrumentation).
        self.passes = 0
        #: The thread and the event that stops it. Each thread has an event of its own: a
        #: thread still ending after `stop` is never told to go on by a `start` after it.
        self._running: tuple[threading.Thread, threading.Event] | None = None

    @property
    def running(self) -> bool:
        return self._running is not None and self._running[0].is_alive()

    def start(self) -> None:
        if self._running is None:
            stopping = threading.Event()
            thread = threading.Thread(
                target=self._run,
                args=(stopping,),
                name=f"sqlite-checkpoint:{self.path.name}",
                daemon=True,
            )
            self._running = (thread, stopping)
            thread.start()

    async def stop(self) -> None:
        """End the thread after its current pass (milliseconds), without blocking the loop."""
        running, self._running = self._running, None
        if running is None:
            return
        thread, stopping = running
        stopping.set()
        await asyncio.to_thread(thread.join)

    def _run(self, stopping: threading.Event) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while not stopping.wait(self.interval):
                if connection is None:
                    connection = self._connect()
                if connection is not None:
                    connection = self._checkpoint(connection)
        finally:
            if connection is not None:
                connection.close()

    def _connect(self) -> sqlite3.Connection | None:
        try:
            # mode=rw: never create the file (a missing one would become an empty database).
            return sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=rw",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=0,
            )
        except sqlite3.Error as error:
            log.debug("sqlite checkpoint: cannot open the database (%s)", type(error).__name__)
            return None

    def _checkpoint(self, connection: sqlite3.Connection) -> sqlite3.Connection | None:
        """One passive checkpoint. A busy one (the writer's own checkpoint under way) does
        nothing and says so in its result, as SQLite's automatic checkpoint does; an error
        closes the connection, to be opened again at the next pass."""
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as error:
            log.debug("sqlite checkpoint failed (%s)", type(error).__name__)
            with contextlib.suppress(sqlite3.Error):
                connection.close()
            return None
        self.passes += 1
        return connection
