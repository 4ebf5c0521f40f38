"""What a worker's own turns last wrote, so that its next turn of the same conversation can
skip the read (`SqlConversations.read_for_turn`; a chat's, found by its address:
`read_active_for_turn`).

A web turn is a read and a write. When the worker that serves a conversation's next turn is
the one that wrote its last, the read returns what that write sent: the conversation's row as
saved, with the revision it moved to. Kept here, the next turn starts from it and its write's
revision check (`WHERE revision = ...`, storage.turns) does what the read was for: if anyone
else changed the conversation since (another process's turn, an erasure, the sweeper, the
command line), the write finds another revision, or no row, writes nothing and raises
OvertakenError, and the turn runs again from a real read, as after any unlocked read
overtaken (`IntakeService.handle`). A repeated message id is found by the same write (its
reply is kept: DuplicateError), and the rerun's read replays that reply. So what is kept
never decides anything alone; at worst it costs a write that fails.

One round trip to PostgreSQL (one hand-off to SQLite's writer thread) per turn where there
were two. It pays while one process serves every turn of a conversation: `intake serve` with
one worker (`bot.cli`). Several workers behind one port share a conversation's turns at
random, so most entries would be stale and cost a failed write each: they do not keep any.

An entry is taken, not copied, by the turn that uses it, and put back by that turn's commit:
a second turn of the conversation running meanwhile in this process reads. The entry is the
row's values with the state as the JSON text the write sent, decoded again for each turn (the
service changes the record it is given), as a read decodes the row. At most `size`
conversations are kept, the least recently written dropped first: with the default a few
megabytes, whatever the number of open conversations.

What was typed must not outlive its erasure, even in memory: an erasure or any other change
made through this process's storage drops the entry (`Db.forget_turn`), and an entry is kept
at most `keep_seconds` (a conversation idle longer reads again; expired entries are dropped
as new ones are written, and are never used).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import orjson

from bot.engine.types import ConversationState
from bot.ports import Channel, ConversationRecord

#: Conversations kept per worker (each a few kilobytes: the state's JSON text).
DEFAULT_SIZE = 1000
#: How long an entry may be used: a person answers within minutes, or the turn reads again.
KEEP_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class _Written:
    """A conversation's row as a turn's write left it."""

    channel: Channel
    state_json: str
    created_at: datetime
    updated_at: datetime
    revision: int
    token_hash: str | None
    channel_key: str | None
    reference: str | None
    transcript_seq: int
    #: When it was written (the cache's clock).
    at: float


class TurnCache:
    def __init__(
        self,
        size: int = DEFAULT_SIZE,
        *,
        keep_seconds: float = KEEP_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self.keep_seconds = keep_seconds
        self._clock = clock
        self._written: OrderedDict[str, _Written] = OrderedDict()
        #: The conversation kept for each channel address (a Telegram chat).
        self._by_address: dict[tuple[str, str], str] = {}

    def __len__(self) -> int:
        return len(self._written)

    def take(self, conversation_id: str) -> ConversationRecord | None:
        """The conversation as this worker's last write of it left it (a fresh record), if
        kept; it is no longer kept until a write puts it back."""
        written = self._written.pop(conversation_id, None)
        if written is None:
            return None
        self._unaddress(conversation_id, written)
        if self._clock() - written.at > self.keep_seconds:
            return None
        return ConversationRecord(
            id=conversation_id,
            channel=written.channel,
            state=ConversationState.from_json(orjson.loads(written.state_json)),
            created_at=written.created_at,
            updated_at=written.updated_at,
            revision=written.revision,
            token_hash=written.token_hash,
            channel_key=written.channel_key,
            reference=written.reference,
            transcript_seq=written.transcript_seq,
        )

    def take_active(self, channel: str, channel_key: str) -> ConversationRecord | None:
        """As `take`, the conversation kept for a channel address, if it was still open when
        written (an ended one is not the chat's: its next message opens a new one)."""
        conversation_id = self._by_address.get((channel, channel_key))
        if conversation_id is None:
            return None
        record = self.take(conversation_id)
        if record is None or record.state.status != "active":
            return None
        return record

    def put(self, record: ConversationRecord, state_json: str) -> None:
        """`record` as just committed (its revision the row's new one), its state as the JSON
        text written; unless a later revision is kept already (a second turn of the
        conversation in this process, which read what this one wrote, committed first)."""
        kept = self._written.get(record.id)
        if kept is not None and kept.revision >= record.revision:
            return
        self._written[record.id] = _Written(
            channel=record.channel,
            state_json=state_json,
            created_at=record.created_at,
            updated_at=record.updated_at,
            revision=record.revision,
            token_hash=record.token_hash,
            channel_key=record.channel_key,
            reference=record.reference,
            transcript_seq=record.transcript_seq,
            at=self._clock(),
        )
        self._written.move_to_end(record.id)
        if record.channel_key is not None:
            self._by_address[(record.channel, record.channel_key)] = record.id
        expired = self._clock() - self.keep_seconds
        while self._written and (
            len(self._written) > self.size or next(iter(self._written.values())).at < expired
        ):
            dropped, written = self._written.popitem(last=False)
            self._unaddress(dropped, written)

    def forget(self, conversation_id: str) -> None:
        written = self._written.pop(conversation_id, None)
        if written is not None:
            self._unaddress(conversation_id, written)

    def _unaddress(self, conversation_id: str, written: _Written) -> None:
        if written.channel_key is not None:
            address = (written.channel, written.channel_key)
            if self._by_address.get(address) == conversation_id:
                del self._by_address[address]
