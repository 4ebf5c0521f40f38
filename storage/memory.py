"""`bot.ports.Storage` in memory: the second implementation of the ports.

Fast service tests run on it, and it drives on purpose the paths a database reaches only by
chance (a reference collision, a concurrent duplicate message id, the database failing
mid-turn) through `fail_next`. One lock serialises units of work (as SQLite's single writer
does); a unit of work works on a copy of the data and replaces the data with it on `commit()`,
so nothing is visible, or acknowledged, before commit, and a rollback leaves no trace.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Self

from bot.ports import (
    Acknowledgement,
    AlertSubscription,
    AlertSubscriptions,
    Channel,
    ChatMessageIds,
    ChatMessages,
    ChatSurvey,
    ChatSurveys,
    ConcurrencyError,
    ConversationRecord,
    ConversationRepository,
    DirectoryImportResult,
    DirectoryLocation,
    DirectoryRepository,
    DuplicateError,
    Erasure,
    InboundLog,
    InspectionNews,
    Outbox,
    OutboxMessage,
    OutboxTopicStats,
    OvertakenError,
    ReportRepository,
    SecretStore,
    Storage,
    StorageError,
    StoredReport,
    TranscriptEntry,
    TranscriptRepository,
    TurnWrites,
)

#: Where `fail_next` makes the next call fail: "read" (the turn's read, StorageError),
#: "save_turn" (the turn's write, StorageError), "commit" (StorageError), "reference" (the next
#: report's reference collides, DuplicateError), "miss_reply" (the next turn's read misses the
#: reply already given to its message id, as when a concurrent turn committed it meanwhile),
#: "revision" (someone else saves the conversation just before the next turn's write, so the
#: revision check fails with ConcurrencyError), "overtaken" (the same, as it happens to a turn
#: whose storage read it without the lock: OvertakenError, `read_for_turn`).
Fault = Literal["read", "save_turn", "commit", "reference", "miss_reply", "revision", "overtaken"]

_PRIORITY_RANK = {"urgent": 0, "urgent_review": 1, "routine": 2}


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Reply:
    reply: dict[str, Any]
    conversation_id: str | None
    created_at: datetime


@dataclass
class _Lease:
    claimed_until: datetime | None = None


@dataclass
class _Data:
    conversations: dict[str, ConversationRecord] = field(default_factory=dict)
    replies: dict[tuple[str, str], _Reply] = field(default_factory=dict)
    transcripts: dict[str, list[TranscriptEntry]] = field(default_factory=dict)
    reports: dict[str, StoredReport] = field(default_factory=dict)
    acknowledgements: dict[str, Acknowledgement] = field(default_factory=dict)
    outbox: dict[int, OutboxMessage] = field(default_factory=dict)
    leases: dict[int, _Lease] = field(default_factory=dict)
    next_outbox_id: int = 1
    secrets: dict[str, str] = field(default_factory=dict)
    subscriptions: dict[str, AlertSubscription] = field(default_factory=dict)
    next_subscription_id: int = 1
    surveys: list[ChatSurvey] = field(default_factory=list)
    #: (one id, when kept), oldest first.
    chat_messages: list[tuple[ChatMessageIds, datetime]] = field(default_factory=list)


class _Faults:
    def __init__(self) -> None:
        self._pending: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self._pending.append(fault)

    def take(self, fault: Fault) -> bool:
        if fault in self._pending:
            self._pending.remove(fault)
            return True
        return False

    def raise_if(self, fault: Fault) -> None:
        if self.take(fault):
            raise StorageError(f"injected failure: {fault}")


class MemoryConversations:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(self, record: ConversationRecord) -> None:
        data = self._uow.data
        if record.id in data.conversations:
            raise DuplicateError(f"conversation {record.id!r} exists")
        if record.channel_key is not None and record.state.status == "active":
            if self._active(record.channel, record.channel_key) is not None:
                raise DuplicateError("an active conversation exists for this channel key")
        data.conversations[record.id] = copy.deepcopy(record)

    async def get(self, conversation_id: str) -> ConversationRecord | None:
        self._uow.faults.raise_if("read")
        found = copy.deepcopy(self._uow.data.conversations.get(conversation_id))
        self._continue_after_lines(found)
        return found

    def _active(self, channel: Channel, channel_key: str) -> ConversationRecord | None:
        matches = [
            record
            for record in self._uow.data.conversations.values()
            if record.channel == channel
            and record.channel_key == channel_key
            and record.state.status == "active"
        ]
        matches.sort(key=lambda record: (record.created_at, record.id), reverse=True)
        return copy.deepcopy(matches[0]) if matches else None

    async def find_active(self, channel: Channel, channel_key: str) -> ConversationRecord | None:
        self._uow.faults.raise_if("read")
        found = self._active(channel, channel_key)
        self._continue_after_lines(found)
        return found

    def _continue_after_lines(self, record: ConversationRecord | None) -> None:
        """The turn numbers its lines after every stored one (as the SQL read does, for lines
        a worker from before migration 0003 wrote without advancing the counter)."""
        if record is not None:
            lines = self._uow.data.transcripts.get(record.id)
            if lines:
                record.transcript_seq = max(record.transcript_seq, lines[-1].seq + 1)

    def _prior(self, scope: str, message_id: str | None) -> dict[str, Any] | None:
        if message_id is None or self._uow.faults.take("miss_reply"):
            return None
        found = self._uow.data.replies.get((scope, message_id))
        return copy.deepcopy(found.reply) if found else None

    async def get_for_turn(
        self, conversation_id: str, *, scope: str, message_id: str | None
    ) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
        record = await self.get(conversation_id)
        if record is None:
            return None, None
        return record, self._prior(scope, message_id)

    async def read_for_turn(
        self, conversation_id: str, *, scope: str, message_id: str | None
    ) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
        # Units of work are serialised here: nobody can save in between anyway (the
        # "revision" fault makes someone do so).
        return await self.get_for_turn(conversation_id, scope=scope, message_id=message_id)

    async def find_active_for_turn(
        self, channel: Channel, channel_key: str, *, scope: str, message_id: str
    ) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
        record = await self.find_active(channel, channel_key)
        return record, self._prior(scope, message_id)

    async def read_active_for_turn(
        self, channel: Channel, channel_key: str, *, scope: str, message_id: str
    ) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
        # Serialised, as `read_for_turn` (the "overtaken" fault makes someone save meanwhile).
        return await self.find_active_for_turn(
            channel, channel_key, scope=scope, message_id=message_id
        )

    async def update(self, record: ConversationRecord) -> None:
        stored = self._uow.data.conversations.get(record.id)
        if stored is None or stored.revision != record.revision:
            raise ConcurrencyError(f"conversation {record.id!r} changed since it was loaded")
        saved = copy.deepcopy(record)
        saved.revision += 1
        self._uow.data.conversations[record.id] = saved
        record.revision += 1

    async def delete_untouched(self, channel: str, before: datetime, *, limit: int) -> int:
        data = self._uow.data
        untouched = [
            record.id
            for record in data.conversations.values()
            if record.channel == channel
            and record.state.status == "active"
            and record.updated_at == record.created_at
            and record.created_at < before
        ][:limit]
        for conversation_id in untouched:
            del data.conversations[conversation_id]
            data.transcripts.pop(conversation_id, None)
        return len(untouched)

    async def list_finished_with_data(
        self, before: datetime, *, limit: int
    ) -> builtins.list[ConversationRecord]:
        data = self._uow.data
        scopes = {scope for scope, _ in data.replies}
        found = [
            record
            for record in data.conversations.values()
            if record.state.status != "active"
            and record.updated_at < before
            and (data.transcripts.get(record.id) or record.id in scopes)
        ]
        found.sort(key=lambda record: (record.updated_at, record.id))
        return copy.deepcopy(found[:limit])

    async def mark_unswept(self) -> int:
        return 0  # no list here: `list_finished_with_data` looks at every conversation

    async def list_idle(self, before: datetime, *, limit: int) -> builtins.list[ConversationRecord]:
        found = [
            record
            for record in self._uow.data.conversations.values()
            if record.state.status == "active" and record.updated_at < before
        ]
        found.sort(key=lambda record: (record.updated_at, record.id))
        return copy.deepcopy(found[:limit])


class MemoryInboundLog:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    async def put(
        self,
        scope: str,
        message_id: str,
        reply: dict[str, Any],
        *,
        conversation_id: str | None = None,
    ) -> None:
        replies = self._uow.data.replies
        if (scope, message_id) in replies:
            raise DuplicateError(f"message {message_id!r} in {scope!r} was already handled")
        replies[(scope, message_id)] = _Reply(
            copy.deepcopy(reply), conversation_id, self._uow.now()
        )

    async def erase(self, scope: str) -> None:
        replies = self._uow.data.replies
        for key in [key for key in replies if key[0] == scope]:
            del replies[key]


class MemoryTranscripts:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    async def append(self, conversation_id: str, entries: Sequence[TranscriptEntry]) -> None:
        lines = self._uow.data.transcripts.setdefault(conversation_id, [])
        taken = {line.seq for line in lines}
        if any(entry.seq in taken for entry in entries):
            raise DuplicateError(f"transcript line of {conversation_id!r} exists")
        lines.extend(copy.deepcopy(list(entries)))
        lines.sort(key=lambda line: line.seq)

    async def list(
        self, conversation_id: str, *, max_chars: int | None = None
    ) -> builtins.list[TranscriptEntry]:
        lines = list(self._uow.data.transcripts.get(conversation_id, []))
        if max_chars is not None:
            kept: builtins.list[TranscriptEntry] = []
            total = 0
            for line in reversed(lines):
                total += len(_json_size(line.payload))
                if total > max_chars:
                    break
                kept.append(line)
            lines = kept[::-1]
        return copy.deepcopy(lines)

    async def erase(self, conversation_id: str, *, before_seq: int | None = None) -> None:
        transcripts = self._uow.data.transcripts
        if before_seq is None:
            transcripts.pop(conversation_id, None)
        elif conversation_id in transcripts:
            transcripts[conversation_id] = [
                line for line in transcripts[conversation_id] if line.seq >= before_seq
            ]


def _json_size(payload: dict[str, Any]) -> str:
    import json

    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


class MemoryReports:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(self, report: StoredReport) -> None:
        data = self._uow.data
        if self._uow.faults.take("reference") or report.reference in data.reports:
            raise DuplicateError(f"reference {report.reference!r} exists")
        data.reports[report.reference] = copy.deepcopy(report)

    async def get(self, reference: str) -> StoredReport | None:
        return copy.deepcopy(self._uow.data.reports.get(reference))

    async def list(self, *, limit: int = 100, offset: int = 0) -> builtins.list[StoredReport]:
        ordered = sorted(
            self._uow.data.reports.values(),
            key=lambda r: (_PRIORITY_RANK[r.priority], r.created_at, r.reference),
        )
        return copy.deepcopy(ordered[offset : offset + limit])

    async def count(self) -> int:
        return len(self._uow.data.reports)

    async def acknowledge(self, reference: str, *, by: str, at: datetime) -> Acknowledgement | None:
        data = self._uow.data
        if reference not in data.reports:
            return None
        return data.acknowledgements.setdefault(reference, Acknowledgement(at=at, by=by))

    async def acknowledgement(self, reference: str) -> Acknowledgement | None:
        return self._uow.data.acknowledgements.get(reference)

    async def count_unacknowledged_urgent(self) -> int:
        data = self._uow.data
        return sum(
            1
            for report in data.reports.values()
            if report.priority != "routine" and report.reference not in data.acknowledgements
        )


class MemoryOutbox:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(
        self, messages: Sequence[OutboxMessage], *, claim_for: float | None = None
    ) -> builtins.list[OutboxMessage]:
        data = self._uow.data
        now = self._uow.now()
        keys = {m.idempotency_key for m in data.outbox.values() if m.idempotency_key}
        claimed: builtins.list[OutboxMessage] = []
        for message in messages:
            if message.idempotency_key is not None and message.idempotency_key in keys:
                continue
            lease = _Lease()
            if claim_for is not None and not any(
                m.status == "pending"
                and m.topic == message.topic
                and m.ordering_key == message.ordering_key
                for m in data.outbox.values()
            ):
                lease.claimed_until = now + timedelta(seconds=claim_for)
                message.attempts = 1
                claimed.append(message)
            message.id = data.next_outbox_id
            data.next_outbox_id += 1
            message.created_at = message.created_at or now
            message.available_at = message.available_at or now
            data.outbox[message.id] = copy.deepcopy(message)
            data.leases[message.id] = lease
            if message.idempotency_key is not None:
                keys.add(message.idempotency_key)
        self._uow.outbox_topics.update(message.topic for message in messages)
        return claimed

    async def claim(
        self,
        topic: str | Sequence[str],
        *,
        limit: int,
        lease_seconds: float,
        commit: bool = False,
    ) -> builtins.list[OutboxMessage]:
        data = self._uow.data
        topics = {topic} if isinstance(topic, str) else set(topic)
        blocked: set[tuple[str, str]] = set()
        claimed: builtins.list[OutboxMessage] = []
        for message_id in sorted(data.outbox):
            message = data.outbox[message_id]
            if message.topic not in topics or message.status != "pending":
                continue
            key = (message.topic, message.ordering_key)
            if key in blocked:
                continue
            blocked.add(key)
            if len(claimed) < limit:
                claimed.extend(self._take_head(message_id, lease_seconds))
        await self._commit_if(commit)
        return claimed

    def _take_head(self, message_id: int, lease_seconds: float) -> builtins.list[OutboxMessage]:
        """A key's head (its oldest pending message), leased and counted as an attempt if it
        is due and unleased."""
        message = self._uow.data.outbox[message_id]
        lease = self._uow.data.leases[message_id]
        now = self._uow.now()
        due = message.available_at is None or message.available_at <= now
        free = lease.claimed_until is None or lease.claimed_until <= now
        if not (due and free):
            return []
        lease.claimed_until = now + timedelta(seconds=lease_seconds)
        message.attempts += 1
        return [copy.deepcopy(message)]

    async def mark_done(self, message_id: int, *, keep: dict[str, Any] | None = None) -> None:
        message = self._uow.data.outbox.get(message_id)
        if message is not None:
            message.status = "done"
            if keep is not None:
                message.payload = copy.deepcopy(keep)
            self._uow.data.leases[message_id].claimed_until = None

    async def settle_done(
        self,
        message_id: int,
        *,
        keep: dict[str, Any],
        sent: ChatMessageIds | None,
        at: datetime,
        claim_next_for: float | None = None,
    ) -> builtins.list[OutboxMessage]:
        data = self._uow.data
        settled = data.outbox.get(message_id)
        claimed: builtins.list[OutboxMessage] = []
        if settled is not None:
            await self.mark_done(message_id, keep=keep)
            if sent is not None:
                await self._uow.chat_messages.add(sent, at=at)
            if claim_next_for is not None:
                claimed = self._claim_head(settled.topic, settled.ordering_key, claim_next_for)
        await self._uow.commit()
        return claimed

    def _claim_head(
        self, topic: str, ordering_key: str, lease_seconds: float
    ) -> builtins.list[OutboxMessage]:
        """The key's oldest pending message, claimed as `claim` would."""
        pending = [
            message_id
            for message_id, message in self._uow.data.outbox.items()
            if message.topic == topic
            and message.ordering_key == ordering_key
            and message.status == "pending"
        ]
        return self._take_head(min(pending), lease_seconds) if pending else []

    async def retry_later(
        self, message_id: int, *, delay_seconds: float, error: str, commit: bool = False
    ) -> None:
        message = self._uow.data.outbox.get(message_id)
        if message is not None:
            message.available_at = self._uow.now() + timedelta(seconds=delay_seconds)
            message.last_error = error
            self._uow.data.leases[message_id].claimed_until = None
        await self._commit_if(commit)

    async def mark_failed(self, message_id: int, *, error: str, commit: bool = False) -> None:
        message = self._uow.data.outbox.get(message_id)
        if message is not None:
            message.status = "failed"
            message.last_error = error
            self._uow.data.leases[message_id].claimed_until = None
        await self._commit_if(commit)

    async def _commit_if(self, commit: bool) -> None:
        if commit:
            await self._uow.commit()

    async def list(
        self,
        *,
        status: str | None = None,
        topic: str | None = None,
        key_prefix: str | None = None,
        limit: int = 100,
    ) -> builtins.list[OutboxMessage]:
        found = [
            message
            for message in self._uow.data.outbox.values()
            if (status is None or message.status == status)
            and (topic is None or message.topic == topic)
            and (key_prefix is None or (message.idempotency_key or "").startswith(key_prefix))
        ]
        found.sort(key=lambda message: message.id or 0, reverse=True)
        return copy.deepcopy(found[:limit])

    def _failed(self, message_ids: Sequence[int] | None) -> builtins.list[OutboxMessage]:
        wanted = None if message_ids is None else set(message_ids)
        return [
            message
            for message in self._uow.data.outbox.values()
            if message.status == "failed" and (wanted is None or message.id in wanted)
        ]

    async def requeue(self, message_ids: Sequence[int] | None = None) -> int:
        failed = self._failed(message_ids)
        for message in failed:
            message.status = "pending"
            message.attempts = 0
            message.available_at = self._uow.now()
            self._uow.outbox_topics.add(message.topic)
        return len(failed)

    async def purge(self, message_ids: Sequence[int] | None = None) -> int:
        failed = self._failed(message_ids)
        for message in failed:
            assert message.id is not None
            del self._uow.data.outbox[message.id]
            del self._uow.data.leases[message.id]
        return len(failed)

    async def stats(self) -> builtins.list[OutboxTopicStats]:
        by_topic: dict[str, builtins.list[OutboxMessage]] = {}
        for message in self._uow.data.outbox.values():
            by_topic.setdefault(message.topic, []).append(message)
        stats = []
        for topic, messages in sorted(by_topic.items()):
            pending = [m.created_at for m in messages if m.status == "pending" and m.created_at]
            failed = sum(1 for m in messages if m.status == "failed")
            if pending or failed:
                stats.append(
                    OutboxTopicStats(topic, len(pending), min(pending, default=None), failed)
                )
        return stats


class MemoryErasure:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    async def conversation(
        self, conversation_id: str, *, final_reply: dict[str, Any] | None
    ) -> None:
        data = self._uow.data
        data.transcripts.pop(conversation_id, None)
        for message_id in [
            m.id for m in data.outbox.values() if m.conversation_id == conversation_id
        ]:
            assert message_id is not None
            del data.outbox[message_id]
            del data.leases[message_id]
        data.chat_messages = [
            (ids, at) for ids, at in data.chat_messages if ids.conversation_id != conversation_id
        ]
        for key, kept in list(data.replies.items()):
            if kept.conversation_id == conversation_id:
                if final_reply is None:
                    del data.replies[key]
                else:
                    kept.reply = copy.deepcopy(final_reply)

    async def expired_copies(self, before: datetime, *, limit: int) -> int:
        data = self._uow.data
        old_replies = sorted(
            (kept.created_at, key) for key, kept in data.replies.items() if kept.created_at < before
        )[:limit]
        for _, key in old_replies:
            del data.replies[key]
        old_messages = sorted(
            message_id
            for message_id, m in data.outbox.items()
            if m.status in ("done", "failed")
            and m.created_at is not None
            and m.created_at < before
            and (m.conversation_id is not None or "conversation_id" in m.payload)
        )[:limit]
        for message_id in old_messages:
            del data.outbox[message_id]
            del data.leases[message_id]
        return len(old_replies) + len(old_messages)


class MemoryChatMessages:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(self, ids: ChatMessageIds, *, at: datetime) -> None:
        for message_id in ids.message_ids:
            one = ChatMessageIds(ids.channel, ids.channel_key, (message_id,), ids.conversation_id)
            self._uow.data.chat_messages.append((one, at))

    async def take(self, channel: Channel, channel_key: str) -> builtins.list[int]:
        data = self._uow.data
        chat = (channel, channel_key)
        taken = [
            ids.message_ids[0]
            for ids, _at in data.chat_messages
            if ids.channel == chat[0] and ids.channel_key == chat[1]
        ]
        data.chat_messages = [
            (ids, at) for ids, at in data.chat_messages if (ids.channel, ids.channel_key) != chat
        ]
        return taken

    async def purge(self, before: datetime, *, limit: int) -> int:
        data = self._uow.data
        old = [entry for entry in data.chat_messages if entry[1] < before][:limit]
        data.chat_messages = [entry for entry in data.chat_messages if entry not in old]
        return len(old)


class MemorySecrets:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    async def get_or_create(self, name: str, make: Callable[[], str]) -> str:
        secrets = self._uow.data.secrets
        if name not in secrets:
            secrets[name] = make()
        return secrets[name]


class MemoryChatSurveys:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(self, survey: ChatSurvey) -> None:
        self._uow.data.surveys.append(copy.deepcopy(survey))

    async def list(self, *, since: date | None = None) -> builtins.list[ChatSurvey]:
        surveys = sorted(self._uow.data.surveys, key=lambda s: s.day)  # stable: oldest first
        return copy.deepcopy([s for s in surveys if since is None or s.day >= since])

    async def purge(self, before: date) -> int:
        data = self._uow.data
        kept = [s for s in data.surveys if s.day >= before]
        purged = len(data.surveys) - len(kept)
        data.surveys = kept
        return purged


class MemorySubscriptions:
    def __init__(self, uow: MemoryUnitOfWork, directory: MemoryDirectory) -> None:
        self._uow = uow
        self._directory = directory

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
        data = self._uow.data
        for existing in data.subscriptions.values():
            if existing.email == email and existing.location_id == location_id:
                return None
        subscription = AlertSubscription(
            id=data.next_subscription_id,
            email=email,
            location_id=location_id,
            locale=locale,
            token=token,
            status="pending",
            created_at=now,
            last_checked_seen=last_checked_seen,
        )
        data.next_subscription_id += 1
        data.subscriptions[token] = subscription
        return subscription

    async def get(self, token: str) -> AlertSubscription | None:
        return self._uow.data.subscriptions.get(token)

    async def confirm(self, token: str, *, now: datetime) -> AlertSubscription | None:
        subscriptions = self._uow.data.subscriptions
        if token not in subscriptions:
            return None
        subscriptions[token] = replace(subscriptions[token], status="confirmed")
        return subscriptions[token]

    async def remove(self, token: str) -> AlertSubscription | None:
        return self._uow.data.subscriptions.pop(token, None)

    async def newer_inspections(self, *, limit: int = 1000) -> builtins.list[InspectionNews]:
        news = []
        for subscription in sorted(self._uow.data.subscriptions.values(), key=lambda s: s.id):
            location = self._directory.locations.get(subscription.location_id)
            if subscription.status != "confirmed" or location is None:
                continue
            checked, seen = location.last_checked, subscription.last_checked_seen
            if checked is not None and (seen is None or checked > seen):
                news.append(InspectionNews(subscription, location))
        return news[:limit]

    async def mark_told(self, subscription_id: int, last_checked: date) -> None:
        subscriptions = self._uow.data.subscriptions
        for token, subscription in subscriptions.items():
            if subscription.id == subscription_id:
                subscriptions[token] = replace(subscription, last_checked_seen=last_checked)

    async def drop_unconfirmed(self, before: datetime) -> int:
        subscriptions = self._uow.data.subscriptions
        stale = [
            token
            for token, s in subscriptions.items()
            if s.status == "pending" and s.created_at < before
        ]
        for token in stale:
            del subscriptions[token]
        return len(stale)


class MemoryDirectory:
    """The directory is public data replaced whole by an import, outside any unit of work."""

    def __init__(self) -> None:
        self.locations: dict[str, DirectoryLocation] = {}
        self._changes = 0
        self._produced_on: str | None = None

    async def replace_all(
        self, locations: Sequence[DirectoryLocation], *, produced_on: str | None = None
    ) -> DirectoryImportResult:
        incoming = {location.location_id: location for location in locations}
        added = sum(1 for key in incoming if key not in self.locations)
        updated = sum(
            1
            for key, loc in incoming.items()
            if key in self.locations and self.locations[key] != loc
        )
        removed = sum(1 for key in self.locations if key not in incoming)
        if added or updated or removed or self._changes == 0:
            self._changes += 1
        self.locations = incoming
        self._produced_on = produced_on
        return DirectoryImportResult(added, updated, removed, len(incoming), produced_on)

    async def all(self) -> builtins.list[DirectoryLocation]:
        return sorted(self.locations.values(), key=lambda location: location.location_id)

    async def get(self, location_id: str) -> DirectoryLocation | None:
        return self.locations.get(location_id)

    async def version(self) -> str:
        return "" if self._changes == 0 else str(self._changes)


class MemoryUnitOfWork:
    """Works on a copy of the storage's data while holding its lock; `commit()` publishes it."""

    def __init__(self, storage: MemoryStorage) -> None:
        self._storage = storage
        self.faults = storage.faults
        self.now = storage.clock
        self.outbox_topics: set[str] = set()
        self._data: _Data | None = None
        self._conversations = MemoryConversations(self)
        self._inbound = MemoryInboundLog(self)
        self._transcripts = MemoryTranscripts(self)
        self._reports = MemoryReports(self)
        self._outbox = MemoryOutbox(self)
        self._erasure = MemoryErasure(self)
        self._secrets = MemorySecrets(self)
        self._subscriptions = MemorySubscriptions(self, storage.memory_directory)
        self._surveys = MemoryChatSurveys(self)
        self._chat_messages = MemoryChatMessages(self)

    @property
    def data(self) -> _Data:
        if self._data is None:
            raise StorageError("used outside an open unit of work")
        return self._data

    @property
    def conversations(self) -> ConversationRepository:
        return self._conversations

    @property
    def inbound(self) -> InboundLog:
        return self._inbound

    @property
    def transcripts(self) -> TranscriptRepository:
        return self._transcripts

    @property
    def reports(self) -> ReportRepository:
        return self._reports

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    @property
    def erasure(self) -> Erasure:
        return self._erasure

    @property
    def secrets(self) -> SecretStore:
        return self._secrets

    @property
    def subscriptions(self) -> AlertSubscriptions:
        return self._subscriptions

    @property
    def surveys(self) -> ChatSurveys:
        return self._surveys

    @property
    def chat_messages(self) -> ChatMessages:
        return self._chat_messages

    async def __aenter__(self) -> Self:
        await self._storage.lock.acquire()
        self._data = copy.deepcopy(self._storage.data)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._data is not None:
            self._data = None
            self._storage.lock.release()

    async def save_turn(
        self,
        record: ConversationRecord,
        entries: Sequence[TranscriptEntry],
        *,
        scope: str,
        message_id: str | None,
        reply: dict[str, Any] | None,
    ) -> None:
        self.faults.raise_if("save_turn")
        stored = self.data.conversations.get(record.id)
        if stored is not None and self.faults.take("revision"):
            stored.revision += 1
        overtaken = stored is not None and self.faults.take("overtaken")
        if stored is not None and overtaken:
            stored.revision += 1
        before = copy.deepcopy(self.data)
        revision = record.revision
        try:
            await self._conversations.update(record)
            await self._transcripts.append(record.id, entries)
            if message_id is not None:
                await self._inbound.put(scope, message_id, reply or {}, conversation_id=record.id)
        except StorageError as error:
            self._data = before
            record.revision = revision
            if overtaken and isinstance(error, ConcurrencyError):
                raise OvertakenError(str(error)) from error
            raise

    async def commit_turn(
        self,
        record: ConversationRecord,
        entries: Sequence[TranscriptEntry],
        *,
        scope: str,
        message_id: str | None,
        reply: dict[str, Any] | None,
        writes: TurnWrites | None = None,
    ) -> builtins.list[OutboxMessage]:
        # Units of work are serialised here, and a failed save leaves this one uncommitted:
        # whatever `writes` added goes with it.
        claimed = [] if writes is None else await writes.write_through(self)
        await self.save_turn(record, entries, scope=scope, message_id=message_id, reply=reply)
        await self.commit()
        return claimed

    async def commit_new(
        self, record: ConversationRecord, entries: Sequence[TranscriptEntry]
    ) -> None:
        await self._conversations.add(record)
        await self._transcripts.append(record.id, entries)
        await self.commit()

    async def commit(self) -> None:
        data = self.data
        self.faults.raise_if("commit")
        self._storage.data = data
        self._data = None
        self._storage.lock.release()
        for topic in sorted(self.outbox_topics):
            self._storage.notify_outbox(topic)


class MemoryStorage:
    """Everything in dicts; for tests and trying the bot out, never for real reports."""

    def __init__(self, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.clock = clock
        self.data = _Data()
        self.lock = asyncio.Lock()
        self.faults = _Faults()
        self.memory_directory = MemoryDirectory()
        self._listeners: list[Callable[[str], None]] = []
        self.closed = False

    def fail_next(self, fault: Fault) -> None:
        """Make the next call at `fault` fail, once (see `Fault`)."""
        self.faults.add(fault)

    @property
    def directory(self) -> DirectoryRepository:
        return self.memory_directory

    def unit_of_work(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self)

    def dispatcher_storage(self) -> MemoryStorage:
        return self  # nothing to queue for

    async def ping(self) -> None:
        if self.closed:
            raise StorageError("storage closed")

    def notify_outbox(self, topic: str) -> None:
        for wake in list(self._listeners):
            wake(topic)

    async def listen_outbox(self, wake: Callable[[str], None]) -> None:
        self._listeners.append(wake)
        wake("")  # listening now (as the PostgreSQL listener says)
        try:
            await asyncio.Event().wait()
        finally:
            self._listeners.remove(wake)

    async def close(self) -> None:
        self.closed = True


def _satisfies_the_port(storage: MemoryStorage) -> Storage:
    """mypy proves here that MemoryStorage implements `bot.ports.Storage`."""
    return storage
