"""Delivers outbox messages after commit: the generic loop, with the sending left to adapters.

The service writes outgoing messages in the turn's transaction; this loop claims them,
hands each to the adapter for its topic (a Telegram reply, an email, a signed webhook...)
and records the outcome. Retries, backoff, the bound on attempts, dead letters, erasing
delivered bodies and metrics live here once; an adapter only sends and says whether a
failure is worth retrying. Why it is shaped so:

- `Outbox.claim` returns at most the oldest pending message per ordering key (one chat), so
  several messages can be sent concurrently while each chat keeps its order.
- Each message is settled right after the send, in one write committed by itself (on
  PostgreSQL one statement outside any transaction: sent, with the chat's message ids of
  what was sent, and the chat's next reply claimed, `Outbox.settle_done`), so the chat's
  next reply is sent without waiting for the loop, one write after the previous one. Only
  while messages may be waiting for a free slot does a second write claim the oldest of
  them (`claim(commit=True)`), once a batch of slots is free (`backlog_claim_batch`). A
  crash after the send and before the settle resends that one message once its lease
  expires: this is the at-least-once window, kept as small as one database write. See
  `_settle` for a crash between the two writes.
- A channel may claim its reply in the turn's own transaction (`reserve`, then
  `Outbox.add(claim_for=lease_seconds)`, then `hand_over` after the commit), so the reply is
  sent right after the commit without waiting for a claim. It is as durable as any claim:
  if the process dies first, the lease expires and any dispatcher sends it.
- A message waiting to be retried (rate limited, network down) blocks only its own chat;
  the loop goes on claiming other chats' messages.
- The loop is woken at once after a committed turn (`wake()`), on PostgreSQL by the
  outbox trigger's NOTIFY from any worker (`listen=True`), and polls every `poll_interval`
  seconds for messages due for a retry.
- A message that fails `max_attempts` times, or fails for good, becomes a dead letter
  (status "failed"): `intake outbox list|retry|purge` shows, requeues or deletes it.
- A delivered message keeps only what an audit needs (its kind and reference): bodies and
  addresses are erased in the same write that records the delivery.

Message bodies are never logged; only ids, topics and error kinds are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from bot import metrics
from bot.outbox.failures import Permanent, RetryLater
from bot.ports import ChatMessageIds, OutboxMessage, Storage, StorageError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one delivery attempt; `reason` names a counter (never message text)."""

    status: Literal["done", "retry", "failed"]
    reason: str = "sent"
    delay: float = 0.0
    #: The ids the chat gave what was sent, kept (in the same write that records the
    #: delivery) for the exit word to delete.
    sent: ChatMessageIds | None = None

    @classmethod
    def done(cls, reason: str = "sent", *, sent: ChatMessageIds | None = None) -> Outcome:
        return cls("done", reason, sent=sent)

    @classmethod
    def retry(cls, reason: str, delay: float) -> Outcome:
        return cls("retry", reason, max(0.0, delay))

    @classmethod
    def failed(cls, reason: str) -> Outcome:
        return cls("failed", reason)


Deliver = Callable[[OutboxMessage], Awaitable[Outcome]]

#: What a delivered message keeps of its payload: enough to say what was sent for which report.
AUDIT_KEYS = ("kind", "reference")


def audit_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {key: payload[key] for key in AUDIT_KEYS if key in payload}


def backoff(attempts: int, *, base: float = 1.0, cap: float = 300.0) -> float:
    """Exponential delay for the n-th attempt (1-based), capped, with jitter so that many
    messages failing together do not all come back in the same instant."""
    exponent = min(max(attempts - 1, 0), 30)
    delay = min(cap, base * float(2**exponent))
    return delay * random.uniform(0.8, 1.0)


class OutboxDispatcher:
    """Drains outbox topics with bounded concurrency; any number of workers may run one.

    `routes` maps each topic to its adapter; `OutboxDispatcher(storage, topic, deliver)` is
    the one-topic form. The composition root passes `Storage.dispatcher_storage()`, so that
    claims and settles do not queue behind the turns for a pooled connection.
    """

    def __init__(
        self,
        storage: Storage,
        routes: str | Mapping[str, Deliver],
        deliver: Deliver | None = None,
        *,
        poll_interval: float = 1.0,
        concurrency: int = 16,
        lease_seconds: float = 30.0,
        max_attempts: int = 60,
        stop_grace_seconds: float = 5.0,
        listen: bool = False,
    ) -> None:
        if isinstance(routes, str):
            if deliver is None:
                raise TypeError("a topic needs its deliver function")
            routes = {routes: deliver}
        self.storage = storage
        self.routes: dict[str, Deliver] = dict(routes)
        self.topic = ",".join(sorted(self.routes))
        self.listen = listen
        self._listen_task: asyncio.Task[None] | None = None
        #: Called with each message and its recorded outcome (tests, instrumentation).
        self.observers: list[Callable[[OutboxMessage, Outcome], None]] = []
        self.poll_interval = poll_interval
        self.concurrency = concurrency
        #: While messages wait for a slot (`_backlog`), the oldest of them are claimed only
        #: once this many slots are free (or at the poll). Such a claim reads the head of
        #: every key, so the whole backlog: claiming one message per settle read it once per
        #: message sent (with 20,000 replies waiting, 3.4 ms of SQLite's single writer a
        #: claim, 30 times a second; BENCHMARKS.md). A sixteenth of the slots: a few fewer
        #: replies in hand, and the backlog read once per that many sends.
        self.backlog_claim_batch = max(1, concurrency // 16)
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.stop_grace_seconds = stop_grace_seconds
        #: Outcomes by reason ("sent", "rate_limited", "blocked", ...), for logs and metrics.
        self.counters: Counter[str] = Counter()
        self._wake = asyncio.Event()
        self._stopping = False
        self._inflight: set[asyncio.Task[None]] = set()
        #: Slots promised to messages being claimed (by a turn, or by a settle) and not yet
        #: in flight, so that together they never exceed `concurrency`.
        self._reserved = 0
        #: Ordering keys of the messages in flight here whose settle has not begun: a
        #: message written behind one of them is claimed by that settle (`hand_over`).
        self._sending: Counter[str] = Counter()
        #: A turn's message was left unclaimed behind a pending one of its key since the last
        #: settle: the next settle's commit wakes the loop (see `hand_over`).
        self._left_unclaimed = False
        #: Messages may be waiting for a free slot: the loop, or a turn's `reserve`, found
        #: none, or the loop's last claim filled every slot it had. Settles then claim into
        #: every free slot (oldest first), until the loop's claim comes back short.
        self._backlog = False
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def wake(self, key: str | None = None) -> None:
        """Claim now rather than at the next poll (called after a committed turn).

        With `key`, the ordering key of the messages the turn wrote unclaimed: not needed
        when a message of that key is in flight here and its settle has not begun, since
        that settle's claim comes after the commit, so it finds the next of them (in its own
        write when this dispatcher has a slot to spare; if not, the slot it frees goes to
        the oldest message, of any key). Each wake is a claim (with a backlog, once a batch
        of slots is free); a turn behind its chat's reply in flight was one such claim each."""
        if key is not None and key in self._sending:
            return
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"outbox-dispatcher:{self.topic}")
        if self.listen and self._listen_task is None:
            self._listen_task = asyncio.create_task(
                self.storage.listen_outbox(self._notified), name=f"outbox-listen:{self.topic}"
            )

    def reserve(self) -> bool:
        """Hold a slot for a message its writer claims in its own transaction
        (`Outbox.add(claim_for=self.lease_seconds)`); after the commit, `hand_over` what was
        claimed, or `release` if nothing was written. False when this dispatcher is not
        running or has no free slot: the message is then written unclaimed, for a claim.

        The slots a claim in progress holds (the loop's, a settle's) are not free: letting a
        turn take one, so that the dispatcher went over `concurrency` for a while, was tried
        and made a burst less fair (a reply claimed last waits behind every one in hand for
        the send limit; BENCHMARKS.md, "The outbox claim")."""
        if not self.running or self._stopping:
            return False
        if len(self._inflight) + self._reserved >= self.concurrency:
            self._backlog = True
            return False
        self._reserved += 1
        return True

    def release(self) -> None:
        """Give back a slot `reserve` held, nothing claimed for it."""
        self._reserved -= 1

    def hand_over(self, claimed: Sequence[OutboxMessage], key: str | None = None) -> None:
        """Send messages claimed for this dispatcher in a committed transaction, in the slot
        `reserve` held. `key`: the ordering key of what the turn wrote.

        Nothing claimed means an earlier message of the key was still pending when the turn
        wrote its own. That one's settle claims the next message in its own write. If it
        is in flight here and its settle has not begun, that settle's claim comes after this
        commit and finds it (`wake`). Otherwise (in flight in another worker, waiting for a
        retry, or its settle under way: on PostgreSQL that may have claimed before this turn
        committed, and commit after) the loop is woken now, and again after the next settle
        commits, to claim it."""
        self._reserved -= 1
        if not self.running:
            return  # stopped meanwhile: the leases expire and the messages are claimed again
        for message in claimed:
            self._spawn(message)
        if not claimed and (key is None or key not in self._sending):
            self._left_unclaimed = True
            self._wake.set()

    def _notified(self, topic: str) -> None:
        if not topic or topic in self.routes:
            self._wake.set()

    async def stop(self) -> None:
        """Stop claiming; let in-flight sends settle for a moment, then cancel the rest (their
        leases expire and another worker, or the next start, delivers them)."""
        self._stopping = True
        self._wake.set()
        if self._listen_task is not None:
            await _cancel_and_wait(self._listen_task)
            self._listen_task = None
        if self._task is not None:
            await _cancel_and_wait(self._task)
            self._task = None
        self._stopping = False
        if self._inflight:
            _done, pending = await asyncio.wait(
                set(self._inflight), timeout=self.stop_grace_seconds
            )
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        claimed_at = -math.inf
        while not self._stopping:
            self._wake.clear()
            free = self._free()
            # Woken with a backlog and fewer free slots than a batch, the loop leaves them
            # to a settle's claim, but claims at least once a poll interval.
            polled = loop.time() - claimed_at >= self.poll_interval
            if polled or not self._waits_for_a_batch(free):
                claimed_at = loop.time()
                await self._claim_free(free)
            # A settle claims into the slot it frees, so the loop only needs waking for new
            # messages (a committed turn, a NOTIFY) and polling for retries that come due.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)

    async def _claim_free(self, free: int) -> None:
        """The loop's claim into `free` slots; a full claim means more may be waiting."""
        self._reserved += free
        try:
            claimed = await self._claim(free) if free > 0 else []
        finally:
            self._reserved -= free
        if claimed is not None:
            self._backlog = len(claimed) >= free
        for message in claimed or []:
            self._spawn(message)

    def _waits_for_a_batch(self, free: int) -> bool:
        """While messages wait for a slot, fewer free slots than a batch are left for a
        later claim (`backlog_claim_batch`)."""
        return self._backlog and free < self.backlog_claim_batch

    def _free(self) -> int:
        return max(0, self.concurrency - len(self._inflight) - self._reserved)

    def _spawn(self, message: OutboxMessage) -> None:
        self._sending[message.ordering_key] += 1
        task = asyncio.create_task(self._process(message))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    def _settling(self, message: OutboxMessage) -> None:
        """`message`'s settle begins (or, cancelled, never will): from now on a message
        written behind it may be missed by that settle's claim."""
        key = message.ordering_key
        self._sending[key] -= 1
        if self._sending[key] <= 0:
            del self._sending[key]

    async def _claim(self, limit: int) -> list[OutboxMessage] | None:
        """The loop's claim (`_claim_now`), under a name of its own so that the loop's claims
        can be told from the settles' (tests/outbox/test_dispatcher_wakes.py counts them)."""
        return await self._claim_now(limit)

    async def _claim_now(self, limit: int) -> list[OutboxMessage] | None:
        """Claim up to `limit` messages, committed (on PostgreSQL by the claim's own
        statement, outside a transaction); None if that failed."""
        try:
            async with self.storage.unit_of_work() as uow:
                return await uow.outbox.claim(
                    list(self.routes), limit=limit, lease_seconds=self.lease_seconds, commit=True
                )
        except StorageError as error:
            _reraise_if_cancelled(error)
            self.counters["storage_error"] += 1
            log.warning("outbox %s: claim failed (%s)", self.topic, type(error).__name__)
            return None

    async def _process(self, message: OutboxMessage) -> None:
        assert message.id is not None
        deliver = self.routes.get(message.topic)
        try:
            if deliver is None:
                outcome = Outcome.failed("no_adapter")
            else:
                outcome = await deliver(message)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug in a channel must not stop the loop
            log.error(
                "outbox %s: message %s: delivery raised %s",
                message.topic,
                message.id,
                type(error).__name__,
            )
            outcome = Outcome.retry("error", backoff(message.attempts))
        finally:
            self._settling(message)
        if outcome.status == "retry" and message.attempts >= self.max_attempts:
            outcome = Outcome.failed(f"gave_up_{outcome.reason}")
        await self._settle(message, outcome)

    async def _settle(self, message: OutboxMessage, outcome: Outcome) -> None:
        """Record the outcome, and claim into the slot this message frees: the chat's next
        message, if it has one, is then sent without another round of claiming.

        A delivered message is settled in one write committed by itself (on PostgreSQL one
        statement, outside any transaction: no session left idle in a transaction while the
        event loop is busy) that also claims its key's next message when this dispatcher has
        a slot to spare besides this one (`Outbox.settle_done(claim_next_for=...)`): a
        chat's replies follow each other one write apart. Only that: the loop is woken for
        every other message written unclaimed (a turn's `wake`, `hand_over`, a NOTIFY), so a
        second claim here, for every free slot, is needed only while messages may be waiting
        for a slot (`_backlog`; and then once `backlog_claim_batch` slots are free, this
        one included), when this message's slot is the only one free (the freed
        slot then goes to the oldest message, whatever its key), or after a retry or a
        failure (their writes claim nothing). That claim is a second write, after the first
        committed, so that it sees this message as no longer pending and may claim the
        chat's next one: a chat's order holds.

        If the process dies between the two, or the claim fails, the outcome stands and
        nothing is claimed for the freed slot: the next claim (the loop's poll, woken at once
        after a failed claim here; or any other worker's) finds the chat's next message,
        which has no lease to wait for. That is no worse than a settle failing as a whole
        ("recording failed" below: nothing recorded, the message sent again once its lease
        expires), which can still happen to the first write alone."""
        assert message.id is not None
        # This message's own slot is still counted in flight until its task ends: the slots
        # to claim into are that one and, for a claim of every free slot, the spare ones.
        claiming = self.running and not self._stopping
        spare = self._free() if claiming else 0
        claim_next = outcome.status == "done" and spare > 0
        claim_all = (not claim_next or self._backlog) and not self._waits_for_a_batch(1 + spare)
        free = 1 + (spare if claim_all else 0) if claiming else 0
        self._reserved += free
        taken: list[OutboxMessage] = []  # by the settle's own write
        more: list[OutboxMessage] | None = []  # by the claim after it
        try:
            async with self.storage.unit_of_work() as uow:
                if outcome.status == "done":
                    taken = await uow.outbox.settle_done(
                        message.id,
                        keep=audit_payload(message.payload),
                        sent=outcome.sent,
                        at=datetime.now(UTC),
                        claim_next_for=self.lease_seconds if claim_next else None,
                    )
                elif outcome.status == "retry":
                    await uow.outbox.retry_later(
                        message.id, delay_seconds=outcome.delay, error=outcome.reason, commit=True
                    )
                else:
                    await uow.outbox.mark_failed(message.id, error=outcome.reason, commit=True)
            if claim_all and free > len(taken):
                more = await self._claim_now(free - len(taken))
        except StorageError as error:
            _reraise_if_cancelled(error)
            # The lease expires and the message is claimed again: a sent one may go twice.
            self.counters["storage_error"] += 1
            log.warning(
                "outbox %s: message %s: recording %s failed (%s)",
                message.topic,
                message.id,
                outcome.status,
                type(error).__name__,
            )
            self._wake.set()  # the loop claims what this settle could not
            return
        finally:
            self._reserved -= free
        if more is None:
            self._wake.set()  # the loop claims what this settle could not
            more = []
        for next_message in [*taken, *more]:
            self._spawn(next_message)
        if self._left_unclaimed:
            self._left_unclaimed = False
            self._wake.set()
        self.counters[outcome.reason] += 1
        metrics.record_delivery(message.topic, outcome.status, message.created_at)
        for observe in self.observers:
            observe(message, outcome)
        if outcome.status == "failed":
            log.warning(
                "outbox %s: message %s failed: %s (totals: %s)",
                message.topic,
                message.id,
                outcome.reason,
                dict(self.counters),
            )
        elif outcome.status == "retry":
            log.info(
                "outbox %s: message %s retry in %.1fs: %s (attempt %d)",
                message.topic,
                message.id,
                outcome.delay,
                outcome.reason,
                message.attempts,
            )


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait for it to end, without swallowing a cancellation of the caller
    that arrives meanwhile. A caller cancelled before it called is not cancelled again here:
    aiohttp runs an app's cleanup in its main task after cancelling it (`web.run_app`), and
    the task's own end (CancelledError) raised there stopped `stop` half-way, so in-flight
    sends had no grace and the cleanup after it (closing the HTTP session) never ran."""
    current = asyncio.current_task()
    cancelled_before = current.cancelling() if current is not None else 0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > cancelled_before:
            raise


def _reraise_if_cancelled(error: StorageError) -> None:
    """A cancelled database call can surface as a StorageError (the driver's connection is left
    mid-operation and its rollback fails): that must still stop the task, not be retried."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError() from error


def adapter(
    send: Callable[[OutboxMessage], Awaitable[None]], *, base: float = 2.0, cap: float = 300.0
) -> Deliver:
    """A route from an adapter that raises `RetryLater` / `Permanent`: the dispatcher, not the
    adapter, decides the backoff (exponential with jitter, capped)."""

    async def deliver(message: OutboxMessage) -> Outcome:
        try:
            await send(message)
        except RetryLater as failure:
            return Outcome.retry(failure.reason, backoff(message.attempts, base=base, cap=cap))
        except Permanent as failure:
            return Outcome.failed(failure.reason)
        return Outcome.done()

    return deliver
