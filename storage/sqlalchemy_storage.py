"""`bot.ports.Storage` over SQLAlchemy: the unit of work and the storage handle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, Self

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.ports import (
    AlertSubscriptions,
    ChatMessages,
    ChatSurveys,
    ConversationRecord,
    ConversationRepository,
    DirectoryRepository,
    Erasure,
    InboundLog,
    Outbox,
    OutboxMessage,
    ReportRepository,
    SecretStore,
    StorageError,
    TranscriptEntry,
    TranscriptRepository,
    TurnWrites,
)
from storage.chat_messages import SqlChatMessages
from storage.db import Clock, Db, PooledTransaction, on_live_connection, utc_now
from storage.directory import SqlDirectory
from storage.engine import (
    POOL_SIZE,
    REQUEST_TIMEOUTS,
    Timeouts,
    create_engine,
    ensure_sqlite_directory,
    is_sqlite,
    normalize_url,
    sqlite_path,
)
from storage.erasure import SqlErasure
from storage.errors import storage_errors, translate
from storage.outbox import SqlOutbox, listen_for_outbox
from storage.pg_group_commit import PgGroupCommit
from storage.repositories import (
    SqlConversations,
    SqlInboundLog,
    SqlReports,
    SqlSecrets,
    SqlTranscripts,
)
from storage.sqlite_checkpoint import WalCheckpointer
from storage.sqlite_group_commit import GroupCommit
from storage.subscriptions import SqlSubscriptions
from storage.surveys import SqlChatSurveys
from storage.turn_cache import TurnCache
from storage.turns import commit_new, commit_turn, save_turn
from storage.write_batches import BatchEvents

log = logging.getLogger(__name__)

#: PostgreSQL: the outbox dispatchers' own pool, apart from the turns' (`POOL_SIZE`), holding
#: the LISTEN that wakes them and their claims and settles. A settle records a reply as sent
#: and claims the chat's next one; sharing the turns' pool, it queued behind a burst of
#: incoming turns (up to 1.6 s), so those chats' next replies waited, and turns queued behind
#: settles until some got 503 (BENCHMARKS.md, "Is the Telegram burst fair?"). A settle takes a
#: few milliseconds alone, but up to a quarter of a second while a burst of turns keeps the
#: event loop busy, and the Bot API's burst of 30 ends in 30 settles at once: with 2
#: connections for them they waited up to 1.9 s (some gave up at 2 s), with 7 up to 0.3 s.
#: So 8, opened as needed and then kept, as the turns' pool keeps its own (`POOL_SIZE`: a
#: connection closed after each burst and opened again for the next cost more than it saved).
#: Connections are opened on first use: the CLI opens none.
DISPATCHER_POOL_SIZE = 8
#: How long a claim or settle waits for one of them, longer than a turn (2 s): nobody is
#: waiting for its answer, and a settle that gives up sends its message again once the lease
#: expires. The wait stays bounded by the holders' statement timeouts (storage.engine).
DISPATCHER_POOL_SECONDS = 10.0
#: A serving worker's turns' pool holds at most this many when INTAKE_DATABASE_CONNECTIONS is
#: set (unset, it holds `POOL_SIZE`: several `intake serve` processes on one database, one per
#: port, cannot share a budget they do not know of). With 15 (`POOL_SIZE`) and 50 web
#: conversations at once, every turn waited in line for a connection (`storage.db.Turnstile`:
#: a future, a timer and a pass of the event loop more), as Little's law has it: about 600
#: turns/s, each holding its connection for a pass of a loop busy with 50 requests (about 25
#: ms), keep 15 in use. A unit of work then cost 0.2-0.3 ms of the worker's CPU, against
#: 0.07-0.1 ms alone (`python -m bench --only layers`). With 50 the line is rarely formed:
#: server CPU per web turn 1.28-1.49 ms against 1.43-1.69 ms with 15, alternated four times,
#: and 3% more turns per second (BENCHMARKS.md). Connections are opened only as turns need
#: them, one at a time (`storage.db.Turnstile`), and then kept.
MAX_SERVING_POOL_SIZE = 50
#: Fewer than this for a worker's turns, and the connections are too few for the workers.
MIN_SERVING_POOL_SIZE = 5


def serving_pool_size(connections: int, workers: int) -> int:
    """The size of each serving worker's turns' pool when `workers` share `connections`
    PostgreSQL connections, each also keeping `DISPATCHER_POOL_SIZE` for its outbox
    dispatchers: the even share, at most `MAX_SERVING_POOL_SIZE`. ValueError if the share
    would be under `MIN_SERVING_POOL_SIZE`."""
    if workers < 1:
        raise ValueError("at least one worker")
    share = connections // workers - DISPATCHER_POOL_SIZE
    if share < MIN_SERVING_POOL_SIZE:
        needed = workers * (DISPATCHER_POOL_SIZE + MIN_SERVING_POOL_SIZE)
        raise ValueError(
            f"{connections} database connections are too few for {workers} workers: "
            f"each needs {DISPATCHER_POOL_SIZE} for its outbox dispatchers and at least "
            f"{MIN_SERVING_POOL_SIZE} for its turns ({needed} in all)"
        )
    return min(share, MAX_SERVING_POOL_SIZE)


#: PostgreSQL: a web turn reads its conversation without the row lock and outside a
#: transaction, and writes (and so commits) in one statement of its own when nothing else was
#: written (`ConversationRepository.read_for_turn`, `UnitOfWork.commit_turn`): two round trips
#: where BEGIN, the locked read, the write and COMMIT are four (about a quarter less storage
#: CPU per turn, BENCHMARKS.md "The web turn in fewer round trips"). A turn committed in
#: between fails the write's revision check (OvertakenError) and the service runs the turn
#: again; its last attempt locks. False: every turn locks (`SqlStorage(unlocked_turns=...)`
#: per storage; the benchmark's "locked" mode and the tests use it to compare both).
UNLOCKED_TURNS = True


class SqlUnitOfWork:
    """One connection, one transaction; leaving without `commit()` rolls back.

    The connection is held as a `storage.db.PooledTransaction`: the turn's statements and the
    commit go to the driver, SQLAlchemy is used only by the statements built with it.

    The connection is taken at the unit of work's first statement; its only write, if that
    is all it does, goes in a batch instead (`storage.sqlite_group_commit`,
    `storage.pg_group_commit`). On SQLite the connection is the single writer, so keep a unit
    of work short and never open a second one (or call `storage.directory`) inside it once it
    has run a statement: it would wait for itself.
    """

    # Typed as the ports: a protocol's attributes are mutable, hence invariant, so the
    # concrete types would not satisfy `bot.ports.UnitOfWork`.
    conversations: ConversationRepository
    inbound: InboundLog
    transcripts: TranscriptRepository
    reports: ReportRepository
    outbox: Outbox
    erasure: Erasure
    secrets: SecretStore
    subscriptions: AlertSubscriptions
    surveys: ChatSurveys
    chat_messages: ChatMessages

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        *,
        unlocked_turns: bool = False,
        turn_cache: TurnCache | None = None,
        group_commit: GroupCommit | PgGroupCommit | None = None,
    ) -> None:
        self._engine = engine
        self._group_commit = group_commit
        self._clock = clock
        self._unlocked_turns = unlocked_turns
        self._turn_cache = turn_cache
        self._db: Db | None = None

    async def __aenter__(self) -> Self:
        # The connection is checked out by the first statement (`Db._check_out`), if any:
        # a unit of work whose only statement is a write that commits goes in a batch.
        postgres = self._engine.dialect.name == "postgresql"
        self._db = db = Db(
            self._engine,
            self._clock,
            reconnectable=postgres,
            unlocked_turns=self._unlocked_turns,
            turn_cache=self._turn_cache,
            group_commit=self._group_commit,
        )
        self.conversations = SqlConversations(db)
        self.inbound = SqlInboundLog(db)
        self.transcripts = SqlTranscripts(db)
        self.reports = SqlReports(db)
        self.outbox = SqlOutbox(db)
        self.erasure = SqlErasure(db)
        self.secrets = SqlSecrets(db)
        self.subscriptions = SqlSubscriptions(db)
        self.surveys = SqlChatSurveys(db)
        self.chat_messages = SqlChatMessages(db)
        return self

    @property
    def transaction(self) -> PooledTransaction | None:
        """The connection this unit of work holds, from its first statement
        (`storage.db.Db.transaction`); None before, and once over."""
        return None if self._db is None else self._db.transaction

    async def save_turn(
        self,
        record: ConversationRecord,
        entries: Sequence[TranscriptEntry],
        *,
        scope: str,
        message_id: str | None,
        reply: dict[str, Any] | None,
    ) -> None:
        if self._db is None:
            raise StorageError("save_turn() outside an open unit of work")
        await save_turn(self._db, record, entries, scope=scope, message_id=message_id, reply=reply)

    async def commit_turn(
        self,
        record: ConversationRecord,
        entries: Sequence[TranscriptEntry],
        *,
        scope: str,
        message_id: str | None,
        reply: dict[str, Any] | None,
        writes: TurnWrites | None = None,
    ) -> list[OutboxMessage]:
        db = self._open("commit_turn()")
        claimed = await commit_turn(
            db, record, entries, scope=scope, message_id=message_id, reply=reply, writes=writes
        )
        if claimed is not None:
            return claimed
        # Not in one step (a transaction has begun): `writes` through the repositories, then
        # the save, then the commit. After a read without the lock the outbox row's id is
        # taken before the save's update locks the conversation; that is safe because a turn
        # that is overtaken never commits (storage.turns, "Order").
        claimed = [] if writes is None else await writes.write_through(self)
        await save_turn(db, record, entries, scope=scope, message_id=message_id, reply=reply)
        await self.commit()
        return claimed

    async def commit_new(
        self, record: ConversationRecord, entries: Sequence[TranscriptEntry]
    ) -> None:
        db = self._open("commit_new()")
        if not await commit_new(db, record, entries):
            await self.conversations.add(record)
            await self.transcripts.append(record.id, entries)
            await self.commit()

    def _open(self, what: str) -> Db:
        if self._db is None or self._db.closed:
            raise StorageError(f"{what} outside an open unit of work")
        return self._db

    async def commit(self) -> None:
        if self._db is None or self._db.closed:
            raise StorageError("commit() outside an open unit of work")
        self._db.closed = True
        transaction = self._db.transaction
        if transaction is None:
            return  # no statement ran, so no connection was checked out: nothing to commit
        with storage_errors():
            await transaction.commit()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        transaction = None if self._db is None else self._db.transaction
        if self._db is not None:
            self._db.closed = True
        self._db = None
        if transaction is None or transaction.release_now():
            return
        # Rolls back unless committed; a rollback that fails or hangs (a connection whose
        # statement just timed out would make it wait as long again) discards the connection,
        # so the next unit of work connects afresh. Shielded, as SQLAlchemy's own
        # AsyncConnection closes: a request cancelled now (client gone, worker stopping) must
        # not strand the connection checked out, for the garbage collector to find later.
        release = asyncio.ensure_future(transaction.release())
        try:
            await asyncio.shield(release)
        except asyncio.CancelledError:
            _RELEASING[release] = self._engine
            release.add_done_callback(_released_after_cancel)
            raise
        except Exception as error:
            if exc is None:
                translated = translate(error)
                if translated is None:
                    raise
                raise translated from error


#: Releases still running for units of work whose task was cancelled, and their engines
#: (asyncio keeps only weak references to tasks; `SqlStorage.close` waits for its own).
_RELEASING: dict[asyncio.Future[None], AsyncEngine] = {}


def _released_after_cancel(release: asyncio.Future[None]) -> None:
    _RELEASING.pop(release, None)
    if not release.cancelled() and release.exception() is not None:
        log.warning(
            "returning a cancelled unit of work's connection failed: %r", release.exception()
        )


async def _finish_releases(engine: AsyncEngine) -> None:
    """Wait for the connections of `engine`'s cancelled units of work to be back in its
    pool. Each release is bounded (a rollback that hangs discards its connection after
    `ROLLBACK_TIMEOUT_SECONDS`); its failure was the cancelled unit of work's, not ours."""
    releases = [release for release, owner in _RELEASING.items() if owner is engine]
    if releases:
        await asyncio.wait(releases)


class SqlStorage:
    """The process's handle on one database: a pool, unit-of-work factory and the directory.

    On PostgreSQL it also holds the outbox dispatchers' own small pool (`dispatcher_storage`).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Clock = utc_now,
        dispatcher_engine: AsyncEngine | None = None,
        unlocked_turns: bool | None = None,
        turn_cache: TurnCache | None = None,
        checkpointer: WalCheckpointer | None = None,
        on_write_batch: BatchEvents | None = None,
    ) -> None:
        self.engine = engine
        #: SQLite's WAL copied into the database file beside the writer (started here,
        #: stopped by `close`), or None for SQLite's own checkpoints in the writer's commits.
        self.checkpointer = checkpointer
        if checkpointer is not None:
            checkpointer.start()
        #: See `UNLOCKED_TURNS` (PostgreSQL only; SQLite always locks).
        self.unlocked_turns = UNLOCKED_TURNS if unlocked_turns is None else unlocked_turns
        #: The conversations this process's turns last wrote (storage.turn_cache), or None to
        #: read every turn. Not used by locked turns on PostgreSQL: their read is the lock.
        self.turn_cache = turn_cache
        self._clock = clock
        #: Units of work whose only statement is a write that commits go together
        #: (storage.sqlite_group_commit, storage.pg_group_commit); `on_write_batch` is told of
        #: each batch (storage.write_batches.BatchEvents).
        self.group_commit: GroupCommit | PgGroupCommit = (
            GroupCommit(engine, on_write_batch)
            if engine.dialect.name == "sqlite"
            else PgGroupCommit(engine, on_write_batch)
        )
        self.directory: DirectoryRepository = SqlDirectory(engine, clock)
        self._dispatcher = (
            SqlStorage(dispatcher_engine, clock=clock, on_write_batch=on_write_batch)
            if dispatcher_engine is not None
            else None
        )

    @property
    def backend(self) -> str:
        """The dialect name: "sqlite" or "postgresql"."""
        return self.engine.dialect.name

    def unit_of_work(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(
            self.engine,
            self._clock,
            unlocked_turns=self.unlocked_turns,
            turn_cache=None
            if self.engine.dialect.name == "postgresql" and not self.unlocked_turns
            else self.turn_cache,
            group_commit=self.group_commit,
        )

    def dispatcher_storage(self) -> SqlStorage:
        """The same database over the dispatchers' own pool (PostgreSQL), or this storage
        (SQLite, or a storage built without one). See `DISPATCHER_POOL_SIZE`."""
        return self._dispatcher if self._dispatcher is not None else self

    async def ping(self) -> None:
        await on_live_connection(self.engine, _select_one)

    async def listen_outbox(self, wake: Callable[[str], None]) -> None:
        """Wake the caller on every committed outbox row, from any process (PostgreSQL);
        returns at once on SQLite. The LISTEN holds one of this storage's connections for as
        long as it runs (the dispatchers' pool's, through `dispatcher_storage`)."""
        await listen_for_outbox(self.engine, wake)

    async def close(self) -> None:
        # A batch still in flight holds a connection, which dispose() would leave open (a
        # caller cancelled while the process stops, e.g. a dispatcher's settle), and so does a
        # cancelled unit of work whose connection is still on its way back.
        await self.group_commit.finish()
        await _finish_releases(self.engine)
        if self.checkpointer is not None:
            await self.checkpointer.stop()
        await self.engine.dispose()
        if self._dispatcher is not None:
            await self._dispatcher.close()


async def _select_one(connection: AsyncConnection) -> None:
    await connection.execute(text("SELECT 1"))


async def create_storage(
    database_url: str,
    *,
    clock: Clock = utc_now,
    timeouts: Timeouts | None = REQUEST_TIMEOUTS,
    keep_turns: bool = False,
    pool_size: int = POOL_SIZE,
    checkpoint_beside_writer: bool = False,
    on_write_batch: BatchEvents | None = None,
) -> SqlStorage:
    """Build the storage for `database_url` (sqlite[+aiosqlite] or postgresql[+asyncpg]).

    Nothing is connected yet: a database that is down makes `ping()` and units of work raise
    StorageError, not the start-up. Run `storage.migrate.upgrade` first to create the tables.
    `clock` (aware UTC) exists so tests can move time, e.g. past an outbox lease.
    `timeouts`: a serving process keeps PostgreSQL's waits to seconds (see storage.engine);
    administration (the CLI) passes None, as it may legitimately take longer.
    `keep_turns`: the process serves every turn of its conversations (one serving worker), so
    it keeps what its turns wrote and skips the next turn's read (storage.turn_cache).
    `pool_size`: PostgreSQL connections for the turns (a serving worker's:
    `serving_pool_size`); the outbox dispatchers keep `DISPATCHER_POOL_SIZE` of their own.
    `checkpoint_beside_writer`: a SQLite file's WAL is copied into it by a thread of its own
    (`storage.sqlite_checkpoint`), not by the writer's commits: for a serving process.
    `on_write_batch`: told of every batch of lone writes, committed, split or failed, for
    metrics (`storage.write_batches.BatchEvents`).
    """
    url = normalize_url(database_url)
    cache = TurnCache() if keep_turns else None
    if is_sqlite(url):
        try:
            ensure_sqlite_directory(url)
        except OSError as error:
            log.warning("cannot create the SQLite directory: %r", error)
        path = sqlite_path(url)
        checkpointer = (
            WalCheckpointer(path) if checkpoint_beside_writer and path is not None else None
        )
        # One writer: the dispatchers queue on the same single connection as the turns.
        return SqlStorage(
            create_engine(url, timeouts=timeouts),
            clock=clock,
            turn_cache=cache,
            checkpointer=checkpointer,
            on_write_batch=on_write_batch,
        )
    return SqlStorage(
        create_engine(url, pool_size=pool_size, timeouts=timeouts),
        clock=clock,
        turn_cache=cache,
        on_write_batch=on_write_batch,
        dispatcher_engine=create_engine(
            url,
            pool_size=DISPATCHER_POOL_SIZE,
            timeouts=None
            if timeouts is None
            else replace(timeouts, pool_seconds=DISPATCHER_POOL_SECONDS),
        ),
    )
