"""The handle repositories share within one unit of work: a connection in a transaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from sqlalchemy import Table, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.util.queue import AsyncAdaptedQueue

from bot.ports import ConversationRecord, StorageError
from storage.engine import SQLITE_BEGUN
from storage.errors import storage_errors
from storage.turn_cache import TurnCache

if TYPE_CHECKING:
    from storage.pg_group_commit import PgGroupCommit
    from storage.sqlite_group_commit import GroupCommit

try:  # asyncpg is optional at runtime (SQLite-only installs)
    import asyncpg

    #: What a statement on a pooled connection the server has dropped raises.
    _CONNECTION_LOST: tuple[type[BaseException], ...] = (
        OSError,
        asyncpg.ConnectionDoesNotExistError,
        asyncpg.AdminShutdownError,
    )
except ImportError:  # pragma: no cover
    _CONNECTION_LOST = (OSError,)

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
#: Opens every statement that commits by itself, outside a transaction (`Db.run_committed`:
#: a turn's write and a new conversation's, storage.turns; an outbox settle or claim,
#: storage.outbox): such a unit of work sends no COMMIT, its write is its commit point. A
#: comment, so PostgreSQL ignores it; it lets the database-outage and freeze tests' proxy
#: (tests/e2e/multiworker_proxy.py) find that point, as it finds COMMIT.
COMMIT_POINT_MARK = "/* turn-commit */"
#: More than a pool holds (storage.engine.POOL_SIZE): how many dead pooled connections
#: `Db.driver` replaces before it gives up.
MAX_DEAD_CONNECTIONS = 32
#: A rollback is one round trip; longer means the connection is stuck (it is then discarded).
ROLLBACK_TIMEOUT_SECONDS = 1.0
T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Turnstile:
    """First come, first served for a pool's connections, and a pool that opens one new
    connection at a time.

    First come, first served: a permit per unit of work holding (or taking) a connection,
    handed out by an asyncio semaphore, which gives a released permit to its first waiter.
    SQLAlchemy's async pool hands connections out through an asyncio queue, which is not
    fair: a connection handed back goes to whoever asks next, and a waiter woken for it finds
    it taken and waits again, at the back. With more requests in flight than connections
    (200 web conversations at once, 15 connections) some waited past the pool's timeout while
    newer ones were served: 53-73 of about 2,000 requests answered 503 in every run, p99 1.8 s
    (BENCHMARKS.md).

    One new connection at a time: there are as many permits as the pool has connections open,
    and one more (up to its bound), so at most one holder finds no idle connection and opens
    one; the others wait for a connection to come back or for that one. A new connection is
    slow at first (its backend reads the catalog and plans each statement afresh, the driver
    prepares each statement on it), so a fresh worker under load that let every waiting turn
    open its own opened all 50 at once, each turn on one of them slow, which made more turns
    wait and open more: the Telegram open loop's first second took up to 1 s a turn where a
    pool held to 5 took 0.3 s (BENCHMARKS.md, "A fresh server's first seconds")."""

    def __init__(self, pool: Any, bound: int, timeout: float) -> None:
        # Weakly: `_TURNSTILES` is keyed weakly by the pool, and a value that held its key
        # would keep every pool (and its engine) ever lined up alive.
        self._pool = weakref.ref(pool)
        self._bound = bound
        #: How long a unit of work waits for a permit (the pool's own timeout).
        self.timeout = timeout
        self._permits = asyncio.Semaphore(0)
        self._capacity = 0
        #: Holders checking a connection out through SQLAlchemy, which may be opening one.
        self._checking_out = 0
        self.widen()

    def _open_connections(self) -> int:
        """Connections the pool has open, in use or idle, not counting any a unit of work is
        opening (the pool counts one from the moment it starts opening it): while one is,
        a unit of work giving its connection back must not let another open one too."""
        pool = self._pool()
        if pool is None:
            return 0
        return int(pool.checkedin()) + int(pool.checkedout()) - self._checking_out

    def widen(self) -> None:
        """Permits for every open connection and one more, up to the pool's bound. Never
        fewer than before: a connection dropped (the database restarted) is reopened by the
        next holder that meets it, as before this line existed."""
        if self._capacity >= self._bound:
            return  # the whole pool may be taken: nothing to count (every unit of work's end)
        target = min(self._bound, self._open_connections() + 1)
        while self._capacity < target:
            self._capacity += 1
            self._permits.release()

    async def enter(self) -> None:
        """A permit, waited for at most `timeout` (StorageError after it)."""
        if not self._permits.locked():
            await self._permits.acquire()  # free: taken at once, no timer set for a wait
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self._permits.acquire()
        except TimeoutError as error:
            raise StorageError("no database connection free in time") from error

    def leave(self) -> None:
        """Give the permit back (the connection is back in the pool, or gone)."""
        self.widen()
        self._permits.release()

    @contextlib.asynccontextmanager
    async def checking_out(self) -> AsyncIterator[None]:
        """Around a holder's checkout through SQLAlchemy, which opens a connection when none
        is idle; then as many permits as the connections the pool now has, and one more."""
        self._checking_out += 1
        try:
            yield
        finally:
            self._checking_out -= 1
            self.widen()


#: Each pool's turnstile, with the event loop it serves (an engine used again under another
#: loop, as a command run twice in one process, gets a new one).
_TURNSTILES: weakref.WeakKeyDictionary[Any, tuple[asyncio.AbstractEventLoop, Turnstile]] = (
    weakref.WeakKeyDictionary()
)


def turnstile(engine: AsyncEngine) -> Turnstile | None:
    """The engine's pool's `Turnstile`; None for a pool without a fixed bound (it never makes
    anyone wait)."""
    pool = engine.sync_engine.pool
    size, overflow = getattr(pool, "size", None), getattr(pool, "_max_overflow", -1)
    if not callable(size) or overflow < 0:
        return None
    loop = asyncio.get_running_loop()
    kept = _TURNSTILES.get(pool)
    if kept is None:
        # A connection opened outside a unit of work's checkout (a block in line for one:
        # the outbox's LISTEN, held for good, a staff page, a ping) makes room for one more.
        event.listen(pool, "connect", lambda _connection, _record: _widen(pool))
    if kept is None or kept[0] is not loop:
        timeout = float(getattr(pool, "_timeout", 30.0))
        kept = _TURNSTILES[pool] = (loop, Turnstile(pool, size() + overflow, timeout))
    return kept[1]


def _widen(pool: Any) -> None:
    kept = _TURNSTILES.get(pool)
    if kept is not None:
        kept[1].widen()


@contextlib.asynccontextmanager
async def in_line_for_a_connection(engine: AsyncEngine) -> AsyncIterator[None]:
    """A permit of the engine's turnstile for the block, for a connection taken outside a unit
    of work: a short read (`on_live_connection`), a staff page's transaction, the outbox's
    LISTEN (held for good). Taken straight from the pool, such a connection went to whoever
    asked last, ahead of the units of work waiting in line; and a connection held for long
    outside the line would leave units of work waiting in the pool's own queue instead."""
    line = turnstile(engine)
    if line is not None:
        await line.enter()
    try:
        yield
    finally:
        if line is not None:
            line.leave()


def _idle_queue(pool: Any) -> AsyncAdaptedQueue[Any] | None:
    """The asyncio queue a queue pool keeps its idle connections in (SQLAlchemy's
    `QueuePool._pool`), which `checkout_now` and `release_now` read to tell whether taking or
    returning a connection needs I/O; None for any other pool."""
    queue = getattr(pool, "_pool", None)
    return queue if isinstance(queue, AsyncAdaptedQueue) else None


def checkout_now(engine: AsyncEngine) -> Any | None:
    """A connection from the engine's pool checked out right here, when one is waiting in
    the pool ready to use; None when the checkout would have to wait or talk to the
    database (`AsyncEngine.raw_connection` then, under a greenlet).

    The counterpart of `PooledTransaction.release_now`: SQLAlchemy's checkout runs under a
    greenlet because it may connect, or reconnect a connection past its recycle time or
    invalidated (or ping it, or call checkout listeners, neither of which our pools have).
    When none of that can happen, nothing in it awaits, and the greenlet was most of a unit
    of work's own cost in a busy worker (BENCHMARKS.md). The checkout itself is still
    SQLAlchemy's (`Pool.connect`): the same record, taken from the same queue. The
    conditions mirror `_ConnectionRecord.get_connection` (SQLAlchemy is pinned by the lock
    files; tests/storage/test_checkout_now.py checks each one)."""
    pool: Any = engine.sync_engine.pool
    queue = _idle_queue(pool)
    if queue is None or pool._pre_ping or pool.dispatch.checkout:
        return None
    # The records waiting, in asyncio's own queue (a deque; a list if last in, first out):
    # the next taken is the one `get_nowait()` will return.
    idle: Any = queue._queue
    waiting = idle._queue
    if not waiting:
        return None
    record = waiting[-1] if queue.use_lifo else waiting[0]
    started = record.starttime
    if (
        record.dbapi_connection is None
        or (pool._recycle > -1 and time.time() - started > pool._recycle)
        or pool._invalidate_time > started
        or record._soft_invalidate_time > started
    ):
        return None
    return pool.connect()


class PooledTransaction:
    """One pooled connection in one transaction, driven on the driver's own connection, with
    SQLAlchemy's `AsyncConnection` built over it only when a statement needs SQLAlchemy.

    A turn's unit of work checks a connection out, runs its two statements on the driver
    (storage.turns), commits and returns it; through SQLAlchemy's `AsyncConnection` the
    checkout, BEGIN, commit and close were four greenlet hand-offs and the connection and
    transaction objects around them, about as much CPU as the turn's statements (see
    BENCHMARKS.md, "Profile"). Here: none when the pool has a connection ready and takes it
    back without I/O (`checkout_now`, `release_now`), else one to check out, one to return.

    The transaction is the driver's, tracked where SQLAlchemy's adapter tracks it (PostgreSQL:
    the asyncpg adapter's `_transaction`, begun lazily by the first statement, ours or
    SQLAlchemy's; SQLite: BEGIN IMMEDIATE with the first statement, as the engine sends it for
    every transaction of its own), so statements run either way share it, and `commit()`/`rollback()` end it on the
    driver whichever way it was begun.
    """

    def __init__(self, engine: AsyncEngine, fairy: Any, line: Turnstile | None = None) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        #: The turnstile whose permit this unit of work holds until its connection is back.
        self._line = line
        self._attach(fairy)

    def _attach(self, fairy: Any) -> None:
        self.fairy = fairy
        #: SQLAlchemy's DBAPI adapter over the driver, and the driver's connection.
        self.adapter: Any = fairy.dbapi_connection
        self.driver: Any = fairy.driver_connection
        self._connection: AsyncConnection | None = None
        self.done = False

    @classmethod
    async def begin(cls, engine: AsyncEngine) -> PooledTransaction:
        """Check a connection out of the engine's pool, in turn (`Turnstile`): at once if
        one is ready (`checkout_now`), else through SQLAlchemy under a greenlet. The
        transaction begins with the first statement (SQLite: BEGIN IMMEDIATE, sent with it:
        `run_sqlite`)."""
        line = turnstile(engine)
        if line is not None:
            await line.enter()
        try:
            fairy = checkout_now(engine)
            if fairy is None:
                async with line.checking_out() if line is not None else contextlib.nullcontext():
                    with storage_errors():
                        fairy = await engine.raw_connection()
        except BaseException:
            if line is not None:
                line.leave()
            raise
        return cls(engine, fairy, line)

    def _give_back_permit(self) -> None:
        """The connection is back in the pool (or gone): the next in line may have one."""
        line, self._line = self._line, None
        if line is not None:
            line.leave()

    async def run_sqlite(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` with the sqlite3 connection on aiosqlite's thread, in this unit of work's
        transaction: BEGIN IMMEDIATE first if it has not been sent yet, all in one hand-off.

        The single writer is held from the BEGIN to the commit, and every hand-off to
        aiosqlite's thread waits for the event loop and then the thread; so the turn's read is
        one hand-off with its BEGIN, and its write another (storage.turns), where a statement
        each through aiosqlite's API was one each and through SQLAlchemy four.
        (`aiosqlite.Connection._execute` is how its own methods reach the thread; aiosqlite
        is pinned in the lock files.)"""
        return await self.run_sqlite_then_commit(lambda connection: (work(connection), False))

    async def run_sqlite_then_commit(
        self, work: Callable[[sqlite3.Connection], tuple[T, bool]]
    ) -> T:
        """`run_sqlite`, and COMMIT in the same hand-off when `work` says so (its second
        value): a turn's write and its commit, one trip to aiosqlite's thread where they were
        two. Otherwise the transaction stays open (to be rolled back on release)."""
        info = self.fairy.info

        def call() -> T:
            connection: sqlite3.Connection = self.driver._conn
            if not info.get(SQLITE_BEGUN):
                connection.execute("BEGIN IMMEDIATE")
                info[SQLITE_BEGUN] = True
            result, commit = work(connection)
            if commit:
                connection.commit()
                self.done = True
            return result

        result: T = await self.driver._execute(call)
        return result

    @property
    def in_transaction(self) -> bool:
        """Whether a statement (ours or SQLAlchemy's) began this unit of work's transaction."""
        if self.is_postgres:
            return self.adapter._transaction is not None
        return bool(self.fairy.info.get(SQLITE_BEGUN))

    async def begin_sqlite(self) -> None:
        """SQLite: send BEGIN IMMEDIATE now unless sent already (before a statement run
        through SQLAlchemy, whose own "begin" listener then sends none)."""
        if not self.is_postgres and not self.fairy.info.get(SQLITE_BEGUN):
            await self.run_sqlite(_nothing)

    def connection(self) -> AsyncConnection:
        """SQLAlchemy's connection over this one, for statements built with SQLAlchemy."""
        if self._connection is None:
            sync = Connection(self.engine.sync_engine, connection=self.fairy)
            self._connection = AsyncConnection(self.engine, sync)
        return self._connection

    async def commit(self) -> None:
        """Commit on the driver; the connection stays checked out until `release()`."""
        await self._end("commit")

    async def rollback(self) -> None:
        await self._end("rollback")

    async def _end(self, how: Literal["commit", "rollback"]) -> None:
        """End the transaction on the driver, however it was begun: on PostgreSQL the one the
        asyncpg adapter tracks (none if no statement ran), which it must forget either way."""
        if self.is_postgres:
            transaction = self.adapter._transaction
            if transaction is not None:
                try:
                    await getattr(transaction, how)()
                finally:
                    self.adapter._transaction = None
        else:
            await getattr(self.driver, how)()
        self.done = True

    async def release(self) -> None:
        """Roll back unless committed, and return the connection to the pool. A rollback that
        fails or hangs (the network froze under a statement that timed out) discards the
        connection instead, so the next unit of work connects afresh."""
        try:
            await self._release()
        finally:
            self._give_back_permit()

    async def _release(self) -> None:
        if not self.fairy.is_valid:  # invalidated (SQLAlchemy met a disconnect): back already
            return
        if self.is_postgres and self.driver.is_closed():
            # Lost under a statement run outside a transaction (nothing to roll back, so no
            # failed rollback to discard it): not back into the pool.
            await self.discard()
            return
        if not self.done:
            try:
                async with asyncio.timeout(ROLLBACK_TIMEOUT_SECONDS):
                    await self.rollback()
            except Exception as error:
                log.warning("rollback failed; discarding the connection: %r", error)
                await self.discard()
                raise
        if not self.release_now():
            self.fairy.info.pop(SQLITE_BEGUN, None)
            # Ended on the driver just above or by commit(): no reset rollback on the way back.
            await greenlet_spawn(self.fairy._close_special, transaction_reset=True)

    def release_now(self) -> bool:
        """Return the connection to the pool right here, when its transaction has ended (or
        none began: a read outside one) and the way back needs no I/O; otherwise do nothing
        and say so (then `release()`).

        SQLAlchemy's check-in runs under a greenlet (`greenlet_spawn`) because it may talk to
        the database: a reset rollback (not needed here: the transaction ended on the driver),
        or closing a connection the pool has no room for (an overflow one). When neither can
        happen, nothing in it awaits, and the greenlet and the shielded task around it
        (`SqlUnitOfWork.__aexit__`) were a few percent of a web turn's CPU (BENCHMARKS.md).
        The check-in itself is still SQLAlchemy's: the same record goes back to the same
        queue, waking the next unit of work waiting for it."""
        fairy = self.fairy
        if not fairy.is_valid:
            return False
        if not self.done and self.in_transaction:
            return False  # to be rolled back first: `release()`
        if self.is_postgres and self.driver.is_closed():
            return False  # lost: `release()` discards it
        queue = _idle_queue(self.engine.sync_engine.pool)
        if queue is None or queue._queue.full():
            return False  # not a queue pool, or this one would be closed (overflow)
        fairy.info.pop(SQLITE_BEGUN, None)
        fairy._close_special(transaction_reset=True)
        self._give_back_permit()
        return True

    async def discard(self) -> None:
        """Drop the connection from the pool (closing it) instead of returning it."""
        self.fairy.info.pop(SQLITE_BEGUN, None)
        if not self.fairy.is_valid:
            return
        try:
            await greenlet_spawn(self.fairy.invalidate)
        except Exception as error:  # pragma: no cover - best effort
            log.debug("invalidate failed: %r", error)

    async def replace(self) -> None:
        """The pooled connection was dead before anything ran on it: continue on a new one.
        The pool marked its other old connections stale, so this one connects afresh."""
        await self.discard()
        log.info("pooled connection was dead; the unit of work continues on a new one")
        self._attach(await self.engine.raw_connection())


class Db:
    """Executes statements on one connection, translating failures to StorageError.

    Over a `PooledTransaction` (a unit of work) or over a SQLAlchemy `AsyncConnection` (reads
    outside one: the directory, staff pages); or, for a unit of work, over the engine until
    its first statement checks a connection out (`_check_out`), or hands its only write to
    the group commit (`storage.sqlite_group_commit`, `run_sqlite_then_commit`;
    `storage.pg_group_commit`, `commit_statement`).

    `closed` is set when the unit of work ends, so a repository kept past its transaction fails
    loudly instead of silently opening a new one (the connection would autobegin).

    With `reconnectable` (a unit of work on PostgreSQL, whose pool does not pre-ping), the first
    statement that finds the pooled connection dead (the server restarted, or dropped it while
    idle) runs again on a fresh connection. Nothing of the unit of work has happened yet at
    that point: the BEGIN goes out with the first statement, so there is nothing to lose and
    nothing done twice.

    `driver()` hands the turn's own statements the driver's connection (asyncpg, aiosqlite),
    inside the same transaction as everything run through `execute`: SQLAlchemy's
    per-statement work (greenlet hand-off, parameter and result processing, and on SQLite
    four hand-offs to aiosqlite's thread per statement) was the largest cost of a turn after
    the network (see BENCHMARKS.md, "Profile (2026-11-30)").
    """

    def __init__(
        self,
        handle: AsyncConnection | PooledTransaction | AsyncEngine,
        clock: Clock,
        *,
        reconnectable: bool = False,
        unlocked_turns: bool = False,
        turn_cache: TurnCache | None = None,
        group_commit: GroupCommit | PgGroupCommit | None = None,
    ) -> None:
        #: Where a unit of work's only write goes: storage.sqlite_group_commit on SQLite,
        #: storage.pg_group_commit on PostgreSQL.
        self._group_commit = group_commit
        #: PostgreSQL: a web turn reads without the lock and writes outside a transaction
        #: (`ConversationRepository.read_for_turn`, storage.turns.commit_turn).
        self.unlocked_turns = unlocked_turns
        #: Set by a read without the lock (storage.turns.pg_read_for_turn), or a turn started
        #: from `turn_cache`: a failed revision check is then OvertakenError (run the turn
        #: again), not a plain ConcurrencyError.
        self.read_unlocked = False
        #: The worker's conversations as its turns last wrote them (storage.turn_cache), if
        #: it keeps them; `keep_turn`: this unit of work's turn is one to keep once written
        #: (a web turn's, `read_for_turn`).
        self.turn_cache = turn_cache
        self.keep_turn = False
        self._transaction: PooledTransaction | None = None
        self._connection: AsyncConnection | None = None
        #: A unit of work whose connection is checked out at its first statement
        #: (`SqlUnitOfWork`): the engine to check it out of, until then.
        self._unopened: AsyncEngine | None = None
        #: A unit of work's engine, to check a connection out of again (`hand_back`).
        self._engine: AsyncEngine | None = handle if isinstance(handle, AsyncEngine) else None
        if isinstance(handle, PooledTransaction):
            self._transaction = handle
            self.is_postgres = handle.is_postgres
        elif isinstance(handle, AsyncEngine):
            self._unopened = handle
            self.is_postgres = handle.dialect.name == "postgresql"
        else:
            self._connection = handle
            self.is_postgres = handle.dialect.name == "postgresql"
        self.clock = clock
        self.closed = False
        #: Until the first statement on a connection checked out: whether it may move to a
        #: fresh connection.
        self._reconnectable = reconnectable and self._connection is None
        self._fresh = self._reconnectable
        #: Over a plain AsyncConnection: its adapter and driver connection, once asked for.
        self._adapter: Any = None
        self._driver: Any = None

    @property
    def transaction(self) -> PooledTransaction | None:
        """The unit of work's connection and transaction; None over a plain connection, and
        in a unit of work that checks out at its first statement, until then."""
        return self._transaction

    async def _check_out(self) -> None:
        """Check the unit of work's connection out now, if it waited for its first statement.

        Why PostgreSQL waits: a unit of work whose only statement is a write that commits by
        itself (a turn started from what this worker kept, a new conversation) needs no
        connection of its own; its write goes in a batch (`commit_statement`,
        storage.pg_group_commit), and the pool's connections go to the units of work that
        do run statements.

        Why SQLite waits: its pool is one connection, the single writer, and a unit of work
        holds it from checkout to release. Checked out on entry, every turn held the writer
        through all its own work (the engine, the reply, the event loop's hops), not only its
        statements. Now a unit of work holds it from its first statement, and one whose only
        statement is a write that commits does not take it at all: the write goes in a batch
        (`run_sqlite_then_commit`, storage.sqlite_group_commit). What the writer serializes
        is unchanged: a read (BEGIN IMMEDIATE) holds it until the commit, as before; a turn
        started from what this worker kept is checked by its write's revision test, as it
        already was against another process's writes."""
        if self._unopened is not None:
            with storage_errors():
                self._transaction = await PooledTransaction.begin(self._unopened)
            self._unopened = None
            self._fresh = self._reconnectable  # nothing has run on this one yet

    async def read_for_turn(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """PostgreSQL: a turn's read without the lock, `work(driver)` outside a transaction
        (`run_untransacted`); the write's revision check then finds a turn committed in
        between (`read_unlocked`: OvertakenError). The connection is handed back after it
        (`hand_back`)."""
        found = await self.run_untransacted(work, idempotent=True)
        self.read_unlocked = True
        self.hand_back()
        return found

    def hand_back(self) -> None:
        """PostgreSQL: give the unit of work's connection back to the pool while nothing of
        it is in a transaction (after a turn's read outside one, `read_for_turn`), if that
        needs no I/O; its next statement checks one out again (`_check_out`). So a turn holds
        no connection through its own work (the engine, the reply), and its write, if that is
        all that follows, goes in a batch (`commit_statement`): a turn read in one unit of
        work, as every turn is where the worker keeps none (several workers) and every
        Telegram turn is."""
        transaction = self._transaction
        if self._engine is None or transaction is None or not self.is_postgres:
            return
        if not transaction.in_transaction and transaction.release_now():
            self._transaction = None
            self._unopened = self._engine

    @property
    def connection(self) -> AsyncConnection:
        """SQLAlchemy's connection (built on first use over a unit of work's)."""
        if self._transaction is not None:
            return self._transaction.connection()
        assert self._connection is not None
        return self._connection

    def now(self) -> datetime:
        return self.clock()

    async def execute(
        self,
        statement: Executable,
        parameters: Sequence[dict[str, Any]] | dict[str, Any] | None = None,
    ) -> CursorResult[Any]:
        if self.closed:
            raise StorageError("this unit of work has ended (committed or rolled back)")
        await self._check_out()
        fresh, self._fresh = self._fresh, False
        with storage_errors():
            if self._transaction is not None and not self.is_postgres:
                await self._transaction.begin_sqlite()
            try:
                return await self.connection.execute(statement, parameters)
            except sa_exc.DBAPIError as error:
                if not fresh or self._transaction is None or not error.connection_invalidated:
                    raise
                await self._transaction.replace()
                return await self.connection.execute(statement, parameters)

    async def driver(self) -> Any:
        """The driver's connection of this unit of work, its transaction begun.

        SQLite: the aiosqlite connection, in the unit of work's transaction (BEGIN IMMEDIATE
        sent if it was not yet; the turn's own statements use `PooledTransaction.run_sqlite`). PostgreSQL: the asyncpg connection, its transaction begun here
        unless a statement already began it; it is the one SQLAlchemy's asyncpg adapter
        tracks (`_transaction`, what its cursor starts lazily), so statements run here and
        through `execute` share it, and ending the unit of work ends it. If the BEGIN finds
        the pooled connection dead, the unit of work moves to a fresh connection as
        `execute` does; a server restart leaves every pooled connection dead, and each one
        met is invalidated (so dropped from the pool) until a live one answers. Failures come
        out as StorageError (`storage_errors`)."""
        if self.closed:
            raise StorageError("this unit of work has ended (committed or rolled back)")
        await self._check_out()
        transaction = self._transaction
        if transaction is None:
            return await self._plain_driver()
        if not self.is_postgres:
            await transaction.begin_sqlite()
            return transaction.driver
        may_replace, self._fresh = self._fresh, False
        with storage_errors():
            for _attempt in range(MAX_DEAD_CONNECTIONS):
                adapter, driver = transaction.adapter, transaction.driver
                if adapter._transaction is not None or adapter.isolation_level == "autocommit":
                    return driver
                try:
                    await _begin(adapter, driver)
                    return driver
                except Exception as error:
                    lost = isinstance(error, _CONNECTION_LOST) or driver.is_closed()
                    if not may_replace or not lost:
                        raise
                await transaction.replace()
        raise StorageError("no live database connection after replacing every dead one")

    async def run_sqlite(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """SQLite: `work` on aiosqlite's thread with the sqlite3 connection, in this unit of
        work's transaction, in one hand-off (`PooledTransaction.run_sqlite`)."""
        if self.closed:
            raise StorageError("this unit of work has ended (committed or rolled back)")
        await self._check_out()
        if self._transaction is not None:
            with storage_errors():
                return await self._transaction.run_sqlite(work)
        driver = await self._plain_driver()
        with storage_errors():
            result: T = await driver._execute(lambda: work(driver._conn))
        return result

    async def run_untransacted(self, work: Callable[[Any], Awaitable[T]], *, idempotent: bool) -> T:
        """PostgreSQL: `work(driver)` on this unit of work's asyncpg connection outside any
        transaction, so each of its statements commits by itself (asyncpg runs a statement
        in autocommit unless a transaction was begun): no BEGIN and no COMMIT, two round trips
        fewer. Only while nothing of this unit of work runs in a transaction.

        A pooled connection found dead before `work` sent anything (closed by the server
        while idle) is replaced, as `driver()` replaces one at its BEGIN; after a failure
        mid-statement only `idempotent` work (a read) runs again on a fresh connection,
        since a write may have committed before its answer was lost. Every failure comes out
        as StorageError (`storage_errors`), so the web answers 503 and the client retries."""
        if self.closed:
            raise StorageError("this unit of work has ended (committed or rolled back)")
        await self._check_out()
        transaction = self._transaction
        if transaction is None or not self.is_postgres or transaction.in_transaction:
            raise StorageError("run_untransacted() needs a PostgreSQL unit of work not yet begun")
        may_replace, self._fresh = self._fresh, False
        with storage_errors():
            for _attempt in range(MAX_DEAD_CONNECTIONS):
                driver = transaction.driver
                if not driver.is_closed():
                    try:
                        return await work(driver)
                    except Exception as error:
                        lost = isinstance(error, _CONNECTION_LOST) or driver.is_closed()
                        if not (may_replace and idempotent and lost):
                            raise
                elif not may_replace:
                    raise StorageError("database unavailable: the connection was closed")
                await transaction.replace()
        raise StorageError("no live database connection after replacing every dead one")

    async def run_committed(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """PostgreSQL: `work(driver)`, a write that commits by itself (its statement opens
        with `COMMIT_POINT_MARK`), as the unit of work's only statement
        (`run_untransacted`), which it ends (`untransacted_done`)."""
        result = await self.run_untransacted(work, idempotent=False)
        self.untransacted_done()
        return result

    async def commit_statement(self, statement: str, args: Sequence[Any]) -> Any:
        """PostgreSQL: the one row that `statement`, a write that commits by itself (it opens
        with `COMMIT_POINT_MARK`), returns with `args`, run as the unit of work's last
        statement, which ends it. If the unit of work holds no connection (it ran nothing
        yet, or its read handed the connection back: `hand_back`), the write goes with the
        writes queued meanwhile, in one round trip and one commit (storage.pg_group_commit);
        otherwise it runs on the unit of work's connection (`run_committed`)."""
        if self.closed:
            raise StorageError("this unit of work has ended (committed or rolled back)")
        if self._unopened is not None and self._group_commit is not None and self.is_postgres:
            self._unopened = None
            self.closed = True
            return await cast("PgGroupCommit", self._group_commit).run(statement, args)
        return await self.run_committed(lambda driver: driver.fetchrow(statement, *args))

    async def run_read(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """PostgreSQL: `work(driver)`, a read, on this unit of work's asyncpg connection:
        outside a transaction while none has begun (`run_untransacted`: one round trip, where
        the BEGIN, the read and the rollback at the end of the unit of work were three; under
        READ COMMITTED every statement sees what was committed when it began either way),
        else in the transaction begun, so that it sees what this unit of work wrote."""
        if self._unopened is not None or (
            self._transaction is not None and not self._transaction.in_transaction
        ):
            return await self.run_untransacted(work, idempotent=True)
        driver = await self.driver()
        with storage_errors():
            return await work(driver)

    async def run_sqlite_then_commit(
        self, work: Callable[[sqlite3.Connection], tuple[T, bool]]
    ) -> T:
        """SQLite: `PooledTransaction.run_sqlite_then_commit` (work, then COMMIT when it says
        so, in one hand-off); the unit of work is over once committed."""
        if self.closed:
            raise StorageError("this unit of work has ended (committed or rolled back)")
        if self._unopened is not None and self._group_commit is not None:
            # The whole of this unit of work's database work: it goes with the writes queued
            # meanwhile, in one hand-off and one commit (storage.sqlite_group_commit), and
            # the unit of work never checks the connection out. Over either way: committed,
            # or (work said not to) rolled back to where it began.
            self._unopened = None
            self.closed = True
            with storage_errors():
                return await cast("GroupCommit", self._group_commit).run(work)
        await self._check_out()
        if self._transaction is None:
            raise StorageError("run_sqlite_then_commit() outside a unit of work")
        with storage_errors():
            result = await self._transaction.run_sqlite_then_commit(work)
        if self._transaction.done:
            self.closed = True
        return result

    @property
    def in_transaction(self) -> bool:
        """Whether this unit of work's transaction has begun (a statement began it)."""
        return self._transaction is not None and self._transaction.in_transaction

    def start_from_kept(
        self, take: Callable[[TurnCache], ConversationRecord | None]
    ) -> ConversationRecord | None:
        """A turn's read, where this worker keeps what its turns wrote: marks the turn as one
        to keep once written, and returns what `take` finds kept of its conversation, if
        anything. The write's revision check then stands in for the read (a failed one is
        OvertakenError: the turn runs again, reading)."""
        if self.turn_cache is None:
            return None
        self.keep_turn = True
        kept = take(self.turn_cache)
        if kept is not None:
            self.read_unlocked = True
        return kept

    def forget_turn(self, conversation_id: str) -> None:
        """The conversation was changed or erased outside a turn: this worker keeps nothing of
        it any more (what was typed must not outlive an erasure, even in memory)."""
        if self.turn_cache is not None:
            self.turn_cache.forget(conversation_id)

    def untransacted_done(self) -> None:
        """The unit of work ended with an untransacted write: nothing to roll back."""
        self.closed = True
        if self._transaction is not None:
            self._transaction.done = True

    async def _plain_driver(self) -> Any:
        """`driver()` over a plain AsyncConnection (its transaction is SQLAlchemy's)."""
        assert self._connection is not None
        if self._driver is None:
            with storage_errors():
                fairy = await self._connection.get_raw_connection()
            self._adapter, self._driver = fairy.dbapi_connection, fairy.driver_connection
        if self.is_postgres and self._adapter._transaction is None:
            with storage_errors():
                await _begin(self._adapter, self._driver)
        return self._driver

    def insert_or_ignore(self, table: Table) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING: a duplicate shows as rowcount 0 instead of an
        error, which on PostgreSQL would abort the whole transaction."""
        dialect_insert = postgresql.insert if self.is_postgres else sqlite.insert
        return dialect_insert(table).on_conflict_do_nothing()


def _nothing(_connection: sqlite3.Connection) -> None:
    return None


async def _begin(adapter: Any, driver: Any) -> None:
    """What SQLAlchemy's asyncpg adapter does before its first statement
    (`AsyncAdapt_asyncpg_connection._start_transaction`), with the driver's own errors."""
    transaction = driver.transaction(
        isolation=adapter.isolation_level, readonly=adapter.readonly, deferrable=adapter.deferrable
    )
    await transaction.start()
    adapter._transaction = transaction


async def on_live_connection(
    engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]]
) -> T:
    """Run a read on a pooled connection; if that connection turns out dead, once more on a
    fresh one (the pool marks every older connection stale after a disconnect, so the second
    checkout connects anew). For reads outside a unit of work: ping, the directory. In line
    with the units of work for the connection (`in_line_for_a_connection`)."""
    with storage_errors():
        async with in_line_for_a_connection(engine):
            try:
                async with engine.connect() as connection:
                    return await work(connection)
            except sa_exc.DBAPIError as error:
                if not error.connection_invalidated:
                    raise
            async with engine.connect() as connection:
                return await work(connection)
