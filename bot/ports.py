"""What the service needs from the outside world, as protocols.

`storage/` implements these over SQLAlchemy (SQLite by default, PostgreSQL in production)
and in memory (`storage/memory.py`, for fast tests); one contract suite, typed on these
protocols, runs over all three. The ports say only what `bot/` uses.

Locking is part of the contract: `conversations.get_for_turn` and `find_active_for_turn` must
serialize turns of one conversation across processes (row lock on PostgreSQL; the single
writer on SQLite; one lock per store in memory).

A turn is shaped for few round trips: one read (`get_for_turn`: the locked conversation and
the reply already given to this message id, if any) and one write (`UnitOfWork.save_turn`:
state with its revision check, the transcript lines and the reply to the message id).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from bot.engine.types import ConversationState

Channel = Literal["web", "telegram", "terminal"]


class StorageError(Exception):
    """The database failed or went away; the turn was rolled back and may be retried."""


class ConcurrencyError(StorageError):
    """A conversation was saved by someone else since it was loaded (revision mismatch)."""


class OvertakenError(ConcurrencyError):
    """A turn read without the conversation's lock (`ConversationRepository.read_for_turn`)
    was overtaken: another turn of the conversation committed before its write. Nothing of
    it was written; it can run again on what the other turn left. (A plain ConcurrencyError
    after a locked read is a bug, not a race, and is not retried.)"""


class DuplicateError(StorageError):
    """A unique key already exists (a reference number collision, a repeated message id)."""


@dataclass(slots=True)
class ConversationRecord:
    id: str
    channel: Channel
    state: ConversationState
    created_at: datetime
    updated_at: datetime
    revision: int = 0
    #: SHA-256 hex of the web token; the token itself is never stored.
    token_hash: str | None = None
    #: Channel-specific address, e.g. the Telegram chat id, to find the active conversation.
    channel_key: str | None = None
    reference: str | None = None
    #: The seq the conversation's next transcript line gets (the turn advances it).
    transcript_seq: int = 1


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    """One line of the conversation as shown: role "bot" (rendered message) or "user"."""

    seq: int
    role: Literal["bot", "user"]
    payload: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StoredReport:
    reference: str
    conversation_id: str
    created_at: datetime
    channel: Channel
    locale: str
    #: "urgent" (someone at risk now), "urgent_review" (not sure), "routine".
    priority: Literal["urgent", "urgent_review", "routine"]
    #: The exported fields (see bot/intake/reports.py); JSON-serialisable.
    data: dict[str, Any]


@dataclass(slots=True)
class OutboxMessage:
    """An event to deliver after commit (a Telegram message, a notification).

    `ordering_key` groups messages that must be delivered in order (one Telegram chat).
    `conversation_id` is set when the payload carries a conversation's words (a chat reply):
    erasing that conversation erases the message, pending or delivered.
    """

    topic: str
    ordering_key: str
    payload: dict[str, Any]
    id: int | None = None
    created_at: datetime | None = None
    attempts: int = 0
    available_at: datetime | None = None
    status: Literal["pending", "done", "failed"] = "pending"
    last_error: str | None = None
    conversation_id: str | None = None
    #: "{reference}:{kind}" for a message derived from a report: `Outbox.add` keeps the first
    #: message of a key and drops later ones, so a retried fan-out sends nothing twice.
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class ChatMessageIds:
    """Ids of messages in one chat, ours and the person's (ids only, never text), kept so
    that the quick exit can delete them where the channel lets a bot do that (Telegram)."""

    channel: Channel
    channel_key: str
    message_ids: tuple[int, ...]
    #: The conversation they belong to: erasing it erases them.
    conversation_id: str | None = None


@dataclass(frozen=True, slots=True)
class TurnWrites:
    """What a channel's turn writes beside its conversation, in the turn's own write
    (`UnitOfWork.commit_turn`), so only if that write happens: the reply's outbox row, claimed
    for the writer's own sender for `claim_for` seconds as `Outbox.add(claim_for=...)` claims
    (unless an earlier message of its key is still pending), and the id the chat gave the
    person's message, kept from `at` as `ChatMessages.add(chat_message, at=at)` keeps it."""

    at: datetime
    reply: OutboxMessage | None = None
    claim_for: float | None = None
    chat_message: ChatMessageIds | None = None

    async def write_through(self, uow: UnitOfWork) -> list[OutboxMessage]:
        """Write them through `uow`'s repositories, as a turn did before its save: where the
        turn's own write cannot take them (a transaction already begun, or a backend without
        such a write). The outbox messages claimed for the writer."""
        if self.chat_message is not None:
            await uow.chat_messages.add(self.chat_message, at=self.at)
        if self.reply is None:
            return []
        return await uow.outbox.add([self.reply], claim_for=self.claim_for)


@dataclass(frozen=True, slots=True)
class OutboxTopicStats:
    """One topic's backlog, for /metrics: pending messages and the age of the oldest."""

    topic: str
    pending: int
    oldest_pending_at: datetime | None
    failed: int


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """Who took charge of an urgent report, and when."""

    at: datetime
    by: str


@dataclass(frozen=True, slots=True)
class DirectoryLocation:
    """One registered location from the regulator's directory (public data)."""

    location_id: str
    name: str
    also_known_as: str = ""
    address: str = ""
    postcode: str = ""
    phone: str = ""
    website: str = ""
    service_types: tuple[str, ...] = ()
    specialisms: tuple[str, ...] = ()
    provider_name: str = ""
    provider_id: str = ""
    local_authority: str = ""
    region: str = ""
    url: str = ""
    last_checked: date | None = None


@dataclass(frozen=True, slots=True)
class DirectoryImportResult:
    added: int
    updated: int
    removed: int
    total: int
    produced_on: str | None = field(default=None)


class ConversationRepository(Protocol):
    async def add(self, record: ConversationRecord) -> None: ...

    async def get(self, conversation_id: str) -> ConversationRecord | None:
        """Load one conversation to read it (a turn loads it with `get_for_turn`)."""
        ...

    async def find_active(self, channel: Channel, channel_key: str) -> ConversationRecord | None:
        """The newest conversation of this channel address whose status is "active"."""
        ...

    async def get_for_turn(
        self, conversation_id: str, *, scope: str, message_id: str | None
    ) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
        """Lock the conversation for this unit of work and return it with the reply already
        given to (`scope`, `message_id`), if any (None when `message_id` is None, or when there
        is no such conversation). The reply may be missed when a concurrent turn for the same
        message id committed while this one waited for the lock; `save_turn` then raises
        DuplicateError, and the turn run again finds the reply."""
        ...

    async def read_for_turn(
        self, conversation_id: str, *, scope: str, message_id: str | None
    ) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
        """`get_for_turn` for a turn that ends in `UnitOfWork.commit_turn`, where the backend
        may leave the conversation unlocked (PostgreSQL: read outside any transaction). A turn
        committed meanwhile by someone else then makes the write (`commit_turn`, or
        `save_turn`) raise OvertakenError having written nothing, and the turn is run again;
        a backend that locks anyway (SQLite, memory) reads as `get_for_turn`."""
        ...

    async def find_active_for_turn(
        self, channel: Channel, channel_key: str, *, scope: str, message_id: str
    ) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
        """`find_active`, locking the conversation, and the reply already given to
        (`scope`, `message_id`), as in `get_for_turn`."""
        ...

    async def read_active_for_turn(
        self, channel: Channel, channel_key: str, *, scope: str, message_id: str
    ) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
        """`find_active_for_turn` for a turn that ends in `UnitOfWork.commit_turn`, where the
        backend may leave the conversation unlocked, as `read_for_turn` is to `get_for_turn`:
        a turn of the conversation committed meanwhile makes the write raise OvertakenError
        having written nothing. A backend that locks anyway (SQLite, memory) reads as
        `find_active_for_turn`."""
        ...

    async def update(self, record: ConversationRecord) -> None:
        """Save state; raises ConcurrencyError unless the stored revision equals
        `record.revision`, then increments `record.revision`."""
        ...

    async def delete_untouched(self, channel: str, before: datetime, *, limit: int) -> int:
        """Delete up to `limit` conversations of `channel` opened before `before` that never
        had a turn; returns how many."""
        ...

    async def list_finished_with_data(
        self, before: datetime, *, limit: int
    ) -> list[ConversationRecord]:
        """Up to `limit` ended or submitted conversations last changed before `before` that
        still have transcript lines or remembered replies, oldest first; locked for this unit
        of work, which erases them (a SQL storage takes them off its list of conversations
        due, `storage.models.ConversationRow.finished_at`)."""
        ...

    async def mark_unswept(self) -> int:
        """Put back on the list `list_finished_with_data` reads every ended or submitted
        conversation with data left that is missing from it (one ended by a worker of the
        release before migration 0010, during a rolling upgrade); returns how many. Reads
        the whole table: for the daily purge, not the sweeper."""
        ...

    async def list_idle(self, before: datetime, *, limit: int) -> list[ConversationRecord]:
        """Active conversations last changed before `before`, oldest first, locked for update
        (conversations being used right now are skipped, not waited for)."""
        ...


class InboundLog(Protocol):
    """Idempotency: the reply given to each inbound message id, kept with the turn (a turn
    reads it with `ConversationRepository.get_for_turn`)."""

    async def put(
        self,
        scope: str,
        message_id: str,
        reply: dict[str, Any],
        *,
        conversation_id: str | None = None,
    ) -> None:
        """Raises DuplicateError if (scope, message_id) exists. `conversation_id`: whose reply
        it is, so that erasing the conversation erases it."""
        ...

    async def erase(self, scope: str) -> None:
        """Forget every reply remembered in `scope` (a web conversation's id)."""
        ...


class TranscriptRepository(Protocol):
    async def append(self, conversation_id: str, entries: Sequence[TranscriptEntry]) -> None: ...

    async def list(
        self, conversation_id: str, *, max_chars: int | None = None
    ) -> list[TranscriptEntry]:
        """Oldest first. With `max_chars`, only the newest lines whose stored payloads add up
        to at most that many characters (sizes are read first, so a huge transcript is never
        loaded whole)."""
        ...

    async def erase(self, conversation_id: str, *, before_seq: int | None = None) -> None:
        """Every line, or with `before_seq` only the lines numbered below it."""
        ...


class Erasure(Protocol):
    """Erasing the copies of what a person typed that are kept beside a conversation's state
    (which the service empties itself). Storage knows every table, so it is the one place that
    finds every copy; a new table that keeps a conversation's words must be erased here."""

    async def conversation(
        self, conversation_id: str, *, final_reply: dict[str, Any] | None
    ) -> None:
        """Erase the conversation's transcript, every outbox message carrying its words
        (pending or delivered), its chat message ids, and the replies kept for its message
        ids: replaced by
        `final_reply` (which must hold nothing the person typed), so that a late retry of
        one of its messages is answered with the conversation's end, or deleted when None.
        Messages added after this call (the turn's own final reply) are not touched."""
        ...

    async def expired_copies(self, before: datetime, *, limit: int) -> int:
        """Delete up to `limit` replies kept for idempotency received before `before`, and up
        to `limit` delivered (or given up) outbox messages carrying a conversation's words
        created before `before`; returns how many rows went. A retry cannot arrive that
        late, and the report, if any, is kept in `reports`."""
        ...


class ChatMessages(Protocol):
    """The message ids of each chat (`ChatMessageIds`), for the quick exit to delete."""

    async def add(self, ids: ChatMessageIds, *, at: datetime) -> None: ...

    async def take(self, channel: Channel, channel_key: str) -> builtins.list[int]:
        """Every id kept for the chat, oldest first; they are deleted as they are read."""
        ...

    async def purge(self, before: datetime, *, limit: int) -> int:
        """Delete up to `limit` ids kept before `before` (a bot cannot delete a message older
        than 48 hours anyway); returns how many went."""
        ...


class ReportRepository(Protocol):
    async def add(self, report: StoredReport) -> None:
        """Raises DuplicateError on a reference collision."""
        ...

    async def get(self, reference: str) -> StoredReport | None: ...

    async def list(self, *, limit: int = 100, offset: int = 0) -> list[StoredReport]:
        """Most urgent first, then oldest first within a priority (the intake team's queue)."""
        ...

    async def count(self) -> int: ...

    async def acknowledge(self, reference: str, *, by: str, at: datetime) -> Acknowledgement | None:
        """Record that `by` took charge of the report, unless someone already did: returns the
        acknowledgement that stands (the earlier one wins), None for an unknown reference."""
        ...

    async def acknowledgement(self, reference: str) -> Acknowledgement | None: ...

    async def count_unacknowledged_urgent(self) -> int:
        """Urgent and urgent-review reports nobody has acknowledged yet."""
        ...


class Outbox(Protocol):
    async def add(
        self, messages: Sequence[OutboxMessage], *, claim_for: float | None = None
    ) -> list[OutboxMessage]:
        """Insert in order, filling in ids. A message whose `idempotency_key` already exists
        is not inserted and keeps `id=None`. With `claim_for`, each message is also claimed
        for that many seconds (as `claim` does: one attempt) unless an earlier message of its
        key is still pending; returns the messages so claimed, for the writer to send after
        its commit (else an empty list)."""
        ...

    async def claim(
        self,
        topic: str | Sequence[str],
        *,
        limit: int,
        lease_seconds: float,
        commit: bool = False,
    ) -> list[OutboxMessage]:
        """Claim due pending messages of the topic(s): at most the oldest one per ordering key,
        and none of a key that has an earlier message still pending, so each key keeps its
        order. A claimed message is invisible to other claimers for `lease_seconds` (crash ->
        redelivery).

        With `commit`, the claim is committed and the unit of work is over, as after
        `UnitOfWork.commit()`; it must then be the unit of work's only statement (the
        backend may run it outside a transaction, committing by itself: PostgreSQL). The
        same holds for `commit` on `retry_later` and `mark_failed`, and for `settle_done`."""
        ...

    async def mark_done(self, message_id: int, *, keep: dict[str, Any] | None = None) -> None:
        """Delivered. With `keep`, the payload is reduced to it (what an audit needs): a
        message body is kept only until it is delivered."""
        ...

    async def settle_done(
        self,
        message_id: int,
        *,
        keep: dict[str, Any],
        sent: ChatMessageIds | None,
        at: datetime,
        claim_next_for: float | None = None,
    ) -> list[OutboxMessage]:
        """`mark_done(message_id, keep=keep)` and, only if the message was there to mark
        (not erased meanwhile), `ChatMessages.add(sent, at=at)`: the ids the chat gave what
        was sent. Committed as `claim(commit=True)` is: the unit of work's only statement,
        which it ends.

        With `claim_next_for` (a lease, in seconds), the same write also claims the next
        message of the settled one's key, if it is due and unleased: what `claim` would
        return for that key once this one is done. Returns what it claimed (at most that
        one message; nothing without `claim_next_for`)."""
        ...

    async def list(
        self,
        *,
        status: str | None = None,
        topic: str | None = None,
        key_prefix: str | None = None,
        limit: int = 100,
    ) -> list[OutboxMessage]:
        """Messages newest first, optionally by status, topic and idempotency-key prefix."""
        ...

    async def requeue(self, message_ids: Sequence[int] | None = None) -> int:
        """Failed (dead-letter) messages back to pending with fresh attempts; None = all."""
        ...

    async def purge(self, message_ids: Sequence[int] | None = None) -> int:
        """Delete failed (dead-letter) messages; None = all of them."""
        ...

    async def stats(self) -> builtins.list[OutboxTopicStats]: ...

    async def retry_later(
        self, message_id: int, *, delay_seconds: float, error: str, commit: bool = False
    ) -> None: ...

    async def mark_failed(self, message_id: int, *, error: str, commit: bool = False) -> None: ...


@dataclass(frozen=True, slots=True)
class AlertSubscription:
    """ "Email me when you publish an inspection report on this service", kept apart from
    the report. `token` is the secret in its confirm and stop links."""

    id: int
    email: str
    location_id: str
    locale: str
    token: str
    status: Literal["pending", "confirmed"]
    created_at: datetime
    last_checked_seen: date | None = None


@dataclass(frozen=True, slots=True)
class InspectionNews:
    """A confirmed subscription whose service has a newer inspection than last told."""

    subscription: AlertSubscription
    location: DirectoryLocation


class AlertSubscriptions(Protocol):
    async def add_pending(
        self,
        *,
        email: str,
        location_id: str,
        locale: str,
        token: str,
        last_checked_seen: date | None,
        now: datetime,
    ) -> AlertSubscription | None:
        """A new unconfirmed subscription; None when this address already has one for this
        location (confirmed or waiting), which is left as it is."""
        ...

    async def get(self, token: str) -> AlertSubscription | None: ...

    async def confirm(self, token: str, *, now: datetime) -> AlertSubscription | None: ...

    async def remove(self, token: str) -> AlertSubscription | None:
        """Delete it (the address goes with it); returns what was deleted."""
        ...

    async def newer_inspections(self, *, limit: int = 1000) -> builtins.list[InspectionNews]:
        """Confirmed subscriptions whose location's latest check is newer than the one last
        told, locked for this unit of work."""
        ...

    async def mark_told(self, subscription_id: int, last_checked: date) -> None: ...

    async def drop_unconfirmed(self, before: datetime) -> int:
        """Erase subscriptions never confirmed since `before`."""
        ...


@dataclass(frozen=True, slots=True)
class ChatSurvey:
    """One person's answers to the survey about the chat, kept apart from the reports and
    anonymous: the day (not the time), the channel and language, the answers, and nothing
    that links them to a report, a conversation or a person."""

    day: date
    channel: Channel
    locale: str
    #: By question step id: a choice id, the typed suggestion, or None (skipped).
    answers: dict[str, str | None]


class ChatSurveys(Protocol):
    async def add(self, survey: ChatSurvey) -> None: ...

    async def list(self, *, since: date | None = None) -> builtins.list[ChatSurvey]:
        """Every stored survey (from `since`, if given), oldest first."""
        ...

    async def purge(self, before: date) -> int:
        """Delete the surveys of days before `before`; returns how many."""
        ...


class SecretStore(Protocol):
    async def get_or_create(self, name: str, make: Callable[[], str]) -> str:
        """The stored value of `name`, storing `make()` first if there is none (the first
        writer wins; every worker then reads the same value)."""
        ...


class UnitOfWork(Protocol):
    """One database transaction. Leaving the context without `commit()` rolls back."""

    # Read-only properties, not attributes: a protocol attribute would be invariant, and an
    # implementation's own repository classes would then not satisfy it.
    @property
    def conversations(self) -> ConversationRepository: ...

    @property
    def inbound(self) -> InboundLog: ...

    @property
    def transcripts(self) -> TranscriptRepository: ...

    @property
    def reports(self) -> ReportRepository: ...

    @property
    def outbox(self) -> Outbox: ...

    @property
    def erasure(self) -> Erasure: ...

    @property
    def secrets(self) -> SecretStore: ...

    @property
    def subscriptions(self) -> AlertSubscriptions: ...

    @property
    def surveys(self) -> ChatSurveys: ...

    @property
    def chat_messages(self) -> ChatMessages: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def save_turn(
        self,
        record: ConversationRecord,
        entries: Sequence[TranscriptEntry],
        *,
        scope: str,
        message_id: str | None,
        reply: dict[str, Any] | None,
    ) -> None:
        """The write of one turn, all or nothing: `conversations.update(record)`, then
        `transcripts.append(record.id, entries)`, then (unless `message_id` is None)
        `inbound.put(scope, message_id, reply, conversation_id=record.id)`. Raises
        ConcurrencyError (revision mismatch) or DuplicateError (the message id was already
        handled) having written none of it; on success `record.revision` is incremented."""
        ...

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
        """`save_turn` then `commit()`, in one step where the backend can (PostgreSQL, when
        nothing else was written in this unit of work: one statement that commits by itself;
        SQLite: one hand-off to the writer). Raises as `save_turn`, having written nothing;
        after it the unit of work is over either way.

        `writes` are written with the turn, and only if the turn's write happens: as
        `outbox.add([writes.reply], claim_for=writes.claim_for)` and
        `chat_messages.add(writes.chat_message, at=writes.at)` before `save_turn` would. The
        messages so claimed are returned (as `Outbox.add` returns them); none without."""
        ...

    async def commit_new(
        self, record: ConversationRecord, entries: Sequence[TranscriptEntry]
    ) -> None:
        """`conversations.add(record)`, `transcripts.append(record.id, entries)` and
        `commit()`, in one step where the backend can (as `commit_turn`). Raises
        DuplicateError, having written nothing, if the conversation conflicts."""
        ...

    async def commit(self) -> None: ...


class DirectoryRepository(Protocol):
    async def replace_all(
        self, locations: Sequence[DirectoryLocation], *, produced_on: str | None = None
    ) -> DirectoryImportResult:
        """Make the stored directory equal to `locations` (upsert by id, remove the rest)."""
        ...

    async def all(self) -> list[DirectoryLocation]: ...

    async def get(self, location_id: str) -> DirectoryLocation | None: ...

    async def version(self) -> str:
        """Changes whenever the directory changes, so workers know to reload their index."""
        ...


class Storage(Protocol):
    """The composition root's handle on one database."""

    @property
    def directory(self) -> DirectoryRepository: ...

    def unit_of_work(self) -> UnitOfWork: ...

    def dispatcher_storage(self) -> Storage:
        """What the outbox dispatchers claim, settle and LISTEN through: the same database,
        over connections of their own where the database has more than one writer, so that
        neither they nor the incoming turns wait for a connection behind the other."""
        ...

    async def ping(self) -> None:
        """Raise StorageError unless the database answers."""
        ...

    async def listen_outbox(self, wake: Callable[[str], None]) -> None:
        """Call `wake(topic)` when any process commits an outbox row (on PostgreSQL not a
        Telegram reply: no dispatcher listens for those); runs until cancelled. Returns at
        once where the database cannot notify (SQLite: callers poll)."""
        ...

    async def close(self) -> None: ...
