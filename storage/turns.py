"""The write of one turn (`UnitOfWork.save_turn`, `commit_turn`) in as few statements as the
backend allows, and a new conversation's (`commit_new`).

PostgreSQL: one statement, so one round trip. Data-modifying CTEs update the conversation
(revision check, and only while the message id has no reply yet), then insert the transcript
lines and the reply, both only if that update happened:

    saved   UPDATE conversations ... WHERE id AND revision AND NOT handled RETURNING id
    lines   INSERT INTO transcript_entries SELECT ... FROM saved, jsonb_to_recordset(:lines)
    inbound INSERT INTO inbound_messages SELECT ... FROM saved ON CONFLICT DO NOTHING

The final SELECT reports what happened: updated?, reply inserted?, already handled? Every part
runs on one snapshot taken after the caller locked the conversation (`get_for_turn`), so a
reply committed by an earlier holder of that lock is seen by "handled", and the update writes
nothing when it is. ON CONFLICT only matters to a caller that writes without the lock; it keeps
the transaction usable and the error a DuplicateError.

A turn read without the lock (`pg_read_for_turn`, outside any transaction) is written by
`commit_turn` as a statement of its own, which commits by itself (`RAW_SAVE_TURN_ALONE`, without
ON CONFLICT: a reply kept for the message id meanwhile must undo the update too). A turn
committed in between fails its revision check: OvertakenError, and the service runs it again.

A turn may also start from what this worker's own last write of the conversation left
(`storage.turn_cache`, a sole serving worker): no read at all, the same write, whose revision
check and "handled" test then do what the read was for (a turn overtaken, or a repeated
message id, runs again from a read). `commit_turn` keeps the record it wrote, with the state's
JSON text it sent, for that worker's next turn. Such a write, and the write of a turn whose
read outside a transaction handed its connection back (`Db.hand_back`), goes with the others
queued meanwhile, one pipeline and one commit for all (`Db.commit_statement`,
storage.pg_group_commit); each is still a statement of its own, with its own snapshot, so
what follows holds for it as for a write sent alone.

A Telegram turn does the same (`read_active_for_turn`, the chat's conversation found by its
channel address), and its other rows go with its write (`commit_turn(writes=...)`,
`bot.ports.TurnWrites`): the reply's outbox row and the person's message id, inserted by the
same statement FROM saved (`raw_save_turn_with`, with the outbox's and chat_messages' own
statements, `storage.outbox.pg_add`, `storage.chat_messages.pg_add`), so only if the update
happened, and committed by it: two round trips where BEGIN, the locked read, the message id,
the outbox row, the save and COMMIT were six. On SQLite they go in the write's hand-off.

Order of a chat's replies without the read's lock. The dispatcher sends a chat's outbox rows
by id and claims one only while no earlier one of the chat is pending (`storage.outbox`); so
a chat's ids must be allocated in the order their turns commit, and a reply claimed for its
writer at insert must have no earlier reply still pending. With the locked read both held
because every writer allocated its ids, and ran the pending check, while holding the
conversation's row lock, until its commit. Without it:

- The one statement allocates an outbox id (the column default's nextval) only for a row it
  selects FROM saved: after the UPDATE in `saved` has updated, so locked, the conversation's
  row, which stays locked until the statement commits. Under READ COMMITTED an UPDATE whose
  row was changed by a transaction committed after its snapshot (whether it waited for that
  one's lock or not) checks its WHERE on the newest version: the revision differs, nothing is
  updated, nothing inserted, no id taken. So its ids are taken under the row lock, as the
  locked path's are, and between any two writers of the conversation, of either kind, ids
  follow commit order.
- For the same reason the statement writes only if no other turn of the conversation
  committed after its snapshot; so that snapshot, on which `_KEY_BUSY` runs (taken at the
  statement's start, before it locks the row), sees every earlier reply of the conversation.
  What it may miss is a settle (a reply marked sent meanwhile): the new reply is then left
  unclaimed for the dispatcher's claim, later but never out of order. Other writers of the
  chat's key are the same as with the lock: a new conversation of the chat cannot be opened
  while this one is active (the unique index of active conversations per chat).
- Where a transaction has already begun (a report, an erasure, the exit's deletes, a
  transcript trim), `TurnWrites.write_through` inserts the outbox row before the save, so its
  id is taken before the save's UPDATE locks the row. Of two turns T1, T2 of the conversation
  that both commit, T1 first: T2's revision check passed, so T2 read what T1 wrote, after
  T1's commit, and its ids come after that read. A turn that read before T1's commit fails
  its revision check and rolls back (OvertakenError): an id it took early is never committed
  (a gap in the ids, which order does not mind), and its rerun takes a new one.
- The locked path (the last attempt of a turn, `SqlStorage(unlocked_turns=False)`) is as it
  was; SQLite's single writer serializes everything.
The chat's message ids (`chat_messages`, deleted by the exit in id order) follow the same
argument.

SQLite cannot modify data in a CTE, but there is no network either: the same steps run as
separate statements on the single writer, which nobody else can interleave with. They run on
the sqlite3 connection on aiosqlite's thread (`Db.run_sqlite`): through SQLAlchemy each
statement took about four hand-offs to aiosqlite's thread (cursor, execute, fetch, close),
each waiting for the event loop, and the writer is held all the while; here the read (with
the unit of work's BEGIN IMMEDIATE) is one hand-off and the whole write with its COMMIT another
(`sqlite_get_for_turn`, `_sqlite_write`, `commit_turn`); a turn that started from what the
worker kept has no read, and its write goes in a batch with the others queued meanwhile, one
hand-off and one COMMIT for all (`storage.sqlite_group_commit`). A turn in the middle of a
conversation sets only columns that no index holds (`SQLITE_UPDATE_STATE`): SQLite rewrites
the entries of every index whose columns an UPDATE names, a WAL page each. Values are
stored as SQLAlchemy's SQLite types store them (JSON text, naive UTC text with microseconds),
and read back the same way.

On PostgreSQL the turn's read (`pg_get_for_turn`) and write run on the driver's connection
(`Db.driver`, asyncpg, statements prepared once per connection by asyncpg's cache) inside the
unit of work's transaction: the same SQL, without SQLAlchemy's per-statement cost. The values
stored are the same: JSON goes in as text, as SQLAlchemy's JSONB type sends it, and timestamps
as aware UTC datetimes, as `UTCDateTime` does.

JSON is encoded by `bot.jsonenc` (orjson: compact, non-ASCII as it is, several times faster
than `json.dumps`), as SQLAlchemy's JSON columns are (`json_serializer`, storage/engine.py);
any decoder reads back what `json.dumps`'s text read back. Reading still
uses `json.loads` (SQLite) and SQLAlchemy's codec on the connection (PostgreSQL).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from bot.engine.types import ConversationState
from bot.ports import (
    Channel,
    ConcurrencyError,
    ConversationRecord,
    DuplicateError,
    OutboxMessage,
    TranscriptEntry,
    TurnWrites,
)
from storage import chat_messages, outbox
from storage.coltypes import as_utc as _utc
from storage.coltypes import from_sqlite_time, json_text, sqlite_time
from storage.db import COMMIT_POINT_MARK as COMMIT_POINT_MARK  # where the e2e proxy finds it
from storage.db import Db
from storage.errors import storage_errors
from storage.repositories import (
    already_handled,
    overtaken,
    stale_revision,
    sweep_marks,
)

# The turn's statements on the driver's connection ($n parameters). $1..$10 of the write are
# `_save_values`; the read's next_seq is `repositories._NEXT_SEQ` (max of the row's counter and
# the line after the last one written).

#: The turn's update of its conversation ($1..$7 the row's new values, $8 its id, $9 the
#: revision read), as CTE `saved`: no row if another turn committed since that read. The
#: statements below end its WHERE clause (with their own conditions, or none).
#:
#: The sweeper's columns (`storage.models.ConversationRow`, migration 0010), as
#: `repositories.UPDATE_CONVERSATION` sets them, except that a turn may add lines or a reply,
#: so a conversation no longer active is marked for the eraser at its new time whatever was
#: there. An ordinary turn (active, after the first) writes NULL over NULL in both: no indexed
#: value changes, and PostgreSQL keeps the update HOT (tests/service/test_sweep.py).
_SAVED = """
    WITH saved AS (
        UPDATE conversations
        SET state = $1::jsonb, status = $2, revision = revision + 1,
            reference = $3, channel_key = $4, token_hash = $5,
            updated_at = $6, transcript_seq = $7,
            untouched_at = CASE WHEN $2::varchar = 'active' AND $6 = created_at
                                THEN created_at END,
            finished_at = CASE WHEN $2::varchar <> 'active' THEN $6 END
        WHERE id = $8 AND revision = $9"""


def _lines_for(row: str, lines: str) -> str:
    """CTE `lines`: the transcript lines of placeholder `lines` (a JSON array), written for
    the conversation that CTE `row` returns, and none if it returns none. Joined at import
    time from this module's own literals, hence the noqa."""
    return f"""
    lines AS (
        INSERT INTO transcript_entries (conversation_id, seq, role, payload, created_at)
        SELECT {row}.id, line.seq, line.role, line.payload, line.created_at
        FROM {row}, jsonb_to_recordset({lines}::jsonb)
            AS line(seq integer, role varchar, payload jsonb, created_at timestamptz)
    )"""  # noqa: S608


#: The final SELECT of the turn of a message with an id: updated?, reply kept?, already
#: handled? (`_check_pg_row`)
_TURN_OUTCOME = """
    SELECT (SELECT count(*) FROM saved) AS saved,
           (SELECT count(*) FROM inbound) AS inbound,
           EXISTS (SELECT 1 FROM inbound_messages
                   WHERE scope = $11 AND message_id = $12) AS handled"""
#: The turn of a message with an id ($11 scope, $12 message id, $13 reply, $14 now).
RAW_SAVE_TURN = (
    _SAVED  # noqa: S608 (joined from this module's literals)
    + """
          AND NOT EXISTS (SELECT 1 FROM inbound_messages
                          WHERE scope = $11 AND message_id = $12)
        RETURNING id
    ),"""
    + _lines_for("saved", "$10")
    + """,
    inbound AS (
        INSERT INTO inbound_messages (scope, message_id, reply, created_at, conversation_id)
        SELECT $11::varchar, $12::varchar, $13::jsonb, $14::timestamptz, saved.id FROM saved
        ON CONFLICT DO NOTHING
        RETURNING 1
    )"""
    + _TURN_OUTCOME
    + "\n"
)
#: `RAW_SAVE_TURN` as a statement of its own, outside a transaction (`commit_turn`): the same,
#: except that a reply already kept for the message id makes the insert into inbound_messages
#: fail (unique violation: DuplicateError) instead of being skipped, so the whole statement,
#: update and lines too, is undone. (Under ON CONFLICT DO NOTHING the update would stand,
#: committed, with the reply of another turn kept for the id.)
RAW_SAVE_TURN_ALONE = COMMIT_POINT_MARK + RAW_SAVE_TURN.replace(
    "        ON CONFLICT DO NOTHING\n", ""
)
assert "ON CONFLICT" not in RAW_SAVE_TURN_ALONE


@functools.cache
def raw_save_turn_with(*, reply: bool, claimed: bool, chat_message: bool) -> str:
    """`RAW_SAVE_TURN_ALONE` with a channel turn's other rows (`bot.ports.TurnWrites`) joined
    to its `saved` CTE, so written only if the update happened, all committed by the one
    statement: the reply's outbox row (`reply`: `storage.outbox.pg_add`, its parameters from
    $15, claimed for the writer unless its key is busy if `claimed`), then the person's chat
    message ids (`chat_message`: `storage.chat_messages.pg_add`, after the reply's). The final
    SELECT also says the outbox row's id and attempts. Why the chat's replies stay in order
    without the read's lock: the module's docstring."""
    end = RAW_SAVE_TURN_ALONE.index(_TURN_OUTCOME)
    statement, outcome, first = RAW_SAVE_TURN_ALONE[:end], _TURN_OUTCOME, 15
    if reply:
        statement += f""",
    outgoing AS ({outbox.pg_add(first, claimed=claimed, source="saved")}    )"""
        outcome += """,
           (SELECT id FROM outgoing) AS outbox_id,
           (SELECT attempts FROM outgoing) AS outbox_attempts"""
        first += 10
    if chat_message:
        statement += f""",
    kept AS ({chat_messages.pg_add(first, source="saved")}    )"""
    return statement + outcome + "\n"


assert raw_save_turn_with(reply=False, claimed=False, chat_message=False) == RAW_SAVE_TURN_ALONE
#: The turn of a message without an id: state and transcript.
RAW_SAVE_TURN_WITHOUT_ID = (
    _SAVED  # noqa: S608 (joined from this module's literals)
    + """
        RETURNING id
    ),"""
    + _lines_for("saved", "$10")
    + """
    SELECT count(*) AS saved FROM saved
"""
)
#: `RAW_SAVE_TURN_WITHOUT_ID` as a statement of its own, outside a transaction (`commit_turn`).
RAW_SAVE_TURN_WITHOUT_ID_ALONE = COMMIT_POINT_MARK + RAW_SAVE_TURN_WITHOUT_ID


# The two fragments below are joined at import time, from the literals this module passes
# (a function name, placeholders): nothing from outside reaches them, hence the noqa.


def _turn_columns(larger: str) -> str:
    """What every turn's read selects of conversation `c`, in the order `_record` and
    `_sqlite_record` read: its columns, and as next_seq the larger (`larger`: the dialect's
    two-argument maximum) of the row's counter and the line after the last one written."""
    return f"""
    SELECT c.id, c.channel, c.channel_key, c.token_hash, c.state, c.status, c.revision,
           c.reference, c.created_at, c.updated_at,
           {larger}(c.transcript_seq,
                    (SELECT coalesce(max(t.seq), 0) + 1 FROM transcript_entries t
                     WHERE t.conversation_id = c.id)) AS next_seq"""  # noqa: S608


def _prior_reply(scope: str, message_id: str) -> str:
    """The reply already given to (`scope`, `message_id`: the statement's placeholders), as
    the read's last column."""
    return f""",
           (SELECT i.reply FROM inbound_messages i
            WHERE i.scope = {scope} AND i.message_id = {message_id}) AS prior_reply"""  # noqa: S608


#: The turn's read (as `RAW_FIND_ACTIVE_FOR_TURN`, by id): the conversation ($1), locked, with the
#: next transcript number and the reply already given to ($2 scope, $3 message id).
RAW_GET_FOR_TURN = (
    _turn_columns("GREATEST")
    + _prior_reply("$2", "$3")
    + """
    FROM conversations c WHERE c.id = $1
    FOR UPDATE OF c
"""
)
#: `repositories.GET_FOR_UPDATE`, for a turn without a message id.
RAW_GET_FOR_UPDATE = (
    _turn_columns("GREATEST")
    + """
    FROM conversations c WHERE c.id = $1
    FOR UPDATE OF c
"""
)


#: The turn's read without the lock (`read_for_turn`), run outside a transaction: the write's
#: revision check (`WHERE revision = $9`) finds a turn committed in between.
RAW_READ_FOR_TURN = RAW_GET_FOR_TURN.replace("    FOR UPDATE OF c\n", "")
RAW_READ = RAW_GET_FOR_UPDATE.replace("    FOR UPDATE OF c\n", "")
assert "FOR UPDATE" not in RAW_READ_FOR_TURN + RAW_READ

#: A new conversation ($1..$13) with its first transcript lines ($14), in one statement
#: outside a transaction (`commit_new`). Nothing is written if the conversation conflicts (its
#: id, or another active conversation of its channel address), as `SqlConversations.add`.
RAW_ADD_CONVERSATION = (
    COMMIT_POINT_MARK  # noqa: S608 (joined from this module's literals)
    + """
    WITH added AS (
        INSERT INTO conversations (id, channel, channel_key, token_hash, state, status,
                                   revision, reference, created_at, updated_at, transcript_seq,
                                   untouched_at, finished_at)
        VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11, $12, $13)
        ON CONFLICT DO NOTHING
        RETURNING id
    ),"""
    + _lines_for("added", "$14")
    + """
    SELECT count(*) AS added FROM added
"""
)
assert RAW_ADD_CONVERSATION.startswith(COMMIT_POINT_MARK)


def _record(row: Mapping[str, Any]) -> ConversationRecord:
    """A conversation row as read by the driver: JSONB already decoded (SQLAlchemy's codec on
    the connection), timestamps aware UTC."""
    return ConversationRecord(
        id=row["id"],
        channel=cast(Channel, row["channel"]),
        state=ConversationState.from_json(row["state"]),
        created_at=_utc(row["created_at"]),
        updated_at=_utc(row["updated_at"]),
        revision=row["revision"],
        token_hash=row["token_hash"],
        channel_key=row["channel_key"],
        reference=row["reference"],
        transcript_seq=row["next_seq"],
    )


async def pg_get_for_turn(
    db: Db, conversation_id: str, *, scope: str, message_id: str | None
) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
    """See `bot.ports.ConversationRepository.get_for_turn` (PostgreSQL)."""
    driver = await db.driver()
    with storage_errors():
        if message_id is None:
            row = await driver.fetchrow(RAW_GET_FOR_UPDATE, conversation_id)
        else:
            row = await driver.fetchrow(RAW_GET_FOR_TURN, conversation_id, scope, message_id)
    if row is None:
        return None, None
    prior = row["prior_reply"] if message_id is not None else None
    return _record(row), None if prior is None else dict(prior)


async def pg_read_for_turn(
    db: Db, conversation_id: str, *, scope: str, message_id: str | None
) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
    """See `bot.ports.ConversationRepository.read_for_turn` (PostgreSQL): the read of
    `pg_get_for_turn` without the lock, outside a transaction (`Db.read_for_turn`)."""

    async def read(driver: Any) -> Any:
        if message_id is None:
            return await driver.fetchrow(RAW_READ, conversation_id)
        return await driver.fetchrow(RAW_READ_FOR_TURN, conversation_id, scope, message_id)

    row = await db.read_for_turn(read)
    if row is None:
        return None, None
    prior = row["prior_reply"] if message_id is not None else None
    return _record(row), None if prior is None else dict(prior)


#: The turn's read on SQLite (the writer is already ours: BEGIN IMMEDIATE).
SQLITE_GET_FOR_TURN = (
    _turn_columns("max")
    + _prior_reply(":scope", ":message_id")
    + """
    FROM conversations c WHERE c.id = :id
"""
)
#: `_SAVED` on SQLite.
SQLITE_UPDATE_CONVERSATION = """
    UPDATE conversations
    SET state = :state, status = :status, revision = revision + 1,
        reference = :reference, channel_key = :channel_key, token_hash = :token_hash,
        updated_at = :updated_at, transcript_seq = :transcript_seq,
        untouched_at = CASE WHEN :status = 'active' AND :updated_at = created_at
                            THEN created_at END,
        finished_at = CASE WHEN :status <> 'active' THEN :updated_at END
    WHERE id = :b_id AND revision = :b_revision
"""
#: The same, only while the message id has no reply kept yet.
SQLITE_UPDATE_CONVERSATION_UNLESS_HANDLED = (
    SQLITE_UPDATE_CONVERSATION  # noqa: S608 (joined from this module's literals)
    + """      AND NOT EXISTS (SELECT 1 FROM inbound_messages
                      WHERE scope = :scope AND message_id = :message_id)
"""
)
#: A turn in the middle of a conversation on SQLite: the same row as
#: `SQLITE_UPDATE_CONVERSATION` leaves, but only where nothing that the conversation's indexes
#: hold changes (still active at the same channel address, the sweeper's marks NULL before
#: and after), and without naming those columns. SQLite rewrites an index entry whenever the
#: UPDATE sets a column the index holds, whether its value changed or not: each is a page
#: more in the commit's WAL (4 KiB, one of about eleven a web turn wrote; two of a Telegram
#: turn, whose row is in the active-chat index too). No row: the full update runs (the first
#: turn, the last, or a stale revision, which it then finds).
SQLITE_UPDATE_STATE = """
    UPDATE conversations
    SET state = :state, revision = revision + 1, reference = :reference,
        token_hash = :token_hash, updated_at = :updated_at, transcript_seq = :transcript_seq
    WHERE id = :b_id AND revision = :b_revision
      AND status = 'active' AND :status = 'active' AND channel_key IS :channel_key
      AND untouched_at IS NULL AND finished_at IS NULL AND created_at <> :updated_at
"""
SQLITE_UPDATE_STATE_UNLESS_HANDLED = (
    SQLITE_UPDATE_STATE  # noqa: S608 (joined from this module's literals)
    + """      AND NOT EXISTS (SELECT 1 FROM inbound_messages
                      WHERE scope = :scope AND message_id = :message_id)
"""
)
SQLITE_HANDLED = """
    SELECT EXISTS (SELECT 1 FROM inbound_messages
                   WHERE scope = :scope AND message_id = :message_id)
"""
SQLITE_INSERT_LINE = """
    INSERT INTO transcript_entries (conversation_id, seq, role, payload, created_at)
    VALUES (?, ?, ?, ?, ?)
"""
SQLITE_INSERT_INBOUND = """
    INSERT INTO inbound_messages (scope, message_id, reply, created_at, conversation_id)
    VALUES (?, ?, ?, ?, ?)
"""


async def sqlite_get_for_turn(
    db: Db, conversation_id: str, *, scope: str, message_id: str | None
) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
    """See `bot.ports.ConversationRepository.get_for_turn` (SQLite): one statement, in one
    hand-off to aiosqlite's thread with the unit of work's BEGIN IMMEDIATE."""
    parameters = {"id": conversation_id, "scope": scope, "message_id": message_id}

    def read(connection: sqlite3.Connection) -> Any:
        return connection.execute(SQLITE_GET_FOR_TURN, parameters).fetchone()

    row = await db.run_sqlite(read)
    if row is None:
        return None, None
    prior = row[11]
    reply = json.loads(prior) if prior is not None and message_id is not None else None
    return _sqlite_record(row), None if reply is None else dict(reply)


def _line(entry: TranscriptEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "role": entry.role,
        "payload": entry.payload,
        "created_at": _utc(entry.created_at).isoformat(),
    }


async def save_turn(
    db: Db,
    record: ConversationRecord,
    entries: Sequence[TranscriptEntry],
    *,
    scope: str,
    message_id: str | None,
    reply: dict[str, Any] | None,
) -> None:
    """See `bot.ports.UnitOfWork.save_turn`."""
    if message_id is not None and reply is None:
        raise ValueError("a message id needs the reply to remember")
    if db.is_postgres:
        await _save_postgres(db, record, entries, scope=scope, message_id=message_id, reply=reply)
    else:
        write = _sqlite_write(db, record, entries, scope=scope, message_id=message_id, reply=reply)
        _raise_unless_saved(db, await db.run_sqlite(write), record, scope, message_id)
    record.revision += 1


class _Along:
    """A channel turn's other rows (`bot.ports.TurnWrites`) as its write stores them: the
    reply's outbox row (`storage.outbox.added_row`, times not given: `now`, as `Outbox.add`
    gives them) and its lease's end, and the chat message ids."""

    def __init__(self, writes: TurnWrites, now: datetime) -> None:
        self.reply = writes.reply
        self.row = None if writes.reply is None else outbox.added_row(writes.reply, now)
        self.until = None if writes.claim_for is None else now + timedelta(seconds=writes.claim_for)
        chat = writes.chat_message
        self.chat_message = chat if chat is not None and chat.message_ids else None
        self.at = writes.at

    @property
    def foldable(self) -> bool:
        """Whether the turn's write can take them: not a reply with an idempotency key, which
        `Outbox.add` first looks up (a channel's reply has none)."""
        return self.reply is None or self.reply.idempotency_key is None

    def pg_statement(self) -> str:
        return raw_save_turn_with(
            reply=self.row is not None,
            claimed=self.until is not None,
            chat_message=self.chat_message is not None,
        )

    def pg_args(self) -> tuple[Any, ...]:
        """The statement's parameters from $15, in `raw_save_turn_with`'s order."""
        reply = () if self.row is None else outbox.pg_add_args(self.row, self.until)
        chat = (
            ()
            if self.chat_message is None
            else chat_messages.pg_add_args(self.chat_message, self.at)
        )
        return (*reply, *chat)

    def sqlite_write(self, connection: sqlite3.Connection) -> tuple[int, int] | None:
        """Insert them on the writer's thread, after the turn's write: the outbox row's (id,
        attempts), if there is one."""
        inserted = None if self.row is None else outbox.sqlite_add(connection, self.row, self.until)
        if self.chat_message is not None:
            chat_messages.sqlite_add(connection, self.chat_message, self.at)
        return inserted

    def claimed(self, inserted: tuple[int, int] | None) -> list[OutboxMessage]:
        """Fill in the reply's id and times; itself if it was claimed for the writer."""
        if self.reply is None or self.row is None or inserted is None:
            return []
        return (
            [self.reply]
            if outbox.added(self.reply, self.row, inserted, claimed=self.until is not None)
            else []
        )


async def commit_turn(
    db: Db,
    record: ConversationRecord,
    entries: Sequence[TranscriptEntry],
    *,
    scope: str,
    message_id: str | None,
    reply: dict[str, Any] | None,
    writes: TurnWrites | None = None,
) -> list[OutboxMessage] | None:
    """See `bot.ports.UnitOfWork.commit_turn`: the write, with `writes`, and the commit in one
    step where the backend allows, returning the outbox messages claimed (the unit of work is
    then over). None: nothing was done, the caller writes `writes` through the repositories,
    saves and commits in the transaction (PostgreSQL, when a statement of the unit of work began
    one: a report, an erasure, the exit's deletes must commit with the turn; or a write the one
    statement does not take: `writes` on a turn without a message id, a keyed outbox row).

    PostgreSQL, nothing begun: `RAW_SAVE_TURN_ALONE` (or the write without a message id; or
    with `writes`, `raw_save_turn_with`) as a statement of its own, which commits by itself:
    one round trip, no BEGIN, no COMMIT; in a batch with others (`Db.commit_statement`) when
    the unit of work holds no connection (a turn started from what the worker kept, or whose
    read handed its connection back). The revision check finds a turn committed since the
    read (ConcurrencyError); a reply kept for the message id meanwhile fails the whole statement
    (DuplicateError); either way nothing of it stays, `writes` neither. A failure in flight is a
    StorageError: the client's retry of the same message id then finds the reply if the
    statement had committed.

    SQLite: the write, `writes` and COMMIT in one hand-off to the writer's thread (BEGIN
    IMMEDIATE too, if the read did not send it), where the write and the commit were two, and
    the chat message and outbox rows one each."""
    if message_id is not None and reply is None:
        raise ValueError("a message id needs the reply to remember")
    along = None if writes is None else _Along(writes, db.now())
    if along is not None and along.row is None and along.chat_message is None:
        along = None  # nothing to write beside the turn
    if along is not None and not along.foldable:
        return None
    state_json = json_text(record.state.to_json())
    if db.is_postgres:
        if db.in_transaction or (along is not None and message_id is None):
            return None
        values = _pg_values(record, entries, state_json)
        if message_id is None:
            statement, args = RAW_SAVE_TURN_WITHOUT_ID_ALONE, values
        else:
            statement = RAW_SAVE_TURN_ALONE if along is None else along.pg_statement()
            args = (*values, scope, message_id, json_text(reply), _utc(db.now()))
            if along is not None:
                args += along.pg_args()
        row = await db.commit_statement(statement, args)
        with _read_again_if_handled(db, record):
            _check_pg_row(db, row, record, scope, message_id)
        _committed(db, record, state_json)
        if along is None or along.row is None:
            return []
        return along.claimed((int(row["outbox_id"]), int(row["outbox_attempts"])))
    write = _sqlite_write(
        db, record, entries, scope=scope, message_id=message_id, reply=reply, state=state_json
    )

    def write_then_commit(
        connection: sqlite3.Connection,
    ) -> tuple[tuple[str, tuple[int, int] | None], bool]:
        outcome = write(connection)
        if outcome != "saved":
            return (outcome, None), False
        return (outcome, None if along is None else along.sqlite_write(connection)), True

    outcome, inserted = await db.run_sqlite_then_commit(write_then_commit)
    with _read_again_if_handled(db, record):
        _raise_unless_saved(db, outcome, record, scope, message_id)
    _committed(db, record, state_json)
    return [] if along is None else along.claimed(inserted)


@contextlib.contextmanager
def _read_again_if_handled(db: Db, record: ConversationRecord) -> Iterator[None]:
    """The message id had its reply kept already (DuplicateError): the turn runs again and
    must read, to replay that reply, whatever this worker kept of the conversation."""
    try:
        yield
    except DuplicateError:
        db.forget_turn(record.id)
        raise


def _committed(db: Db, record: ConversationRecord, state_json: str) -> None:
    """The turn's write committed: the record is at the row's new revision, which the worker
    keeps for the conversation's next turn if it keeps turns (storage.turn_cache)."""
    record.revision += 1
    if db.keep_turn and db.turn_cache is not None:
        db.turn_cache.put(record, state_json)


def _pg_values(
    record: ConversationRecord, entries: Sequence[TranscriptEntry], state_json: str | None = None
) -> tuple[Any, ...]:
    """$1..$10 of the PostgreSQL turn writes (`state_json`: the state's JSON text, if the
    caller has it already)."""
    return (
        json_text(record.state.to_json()) if state_json is None else state_json,
        record.state.status,
        record.reference,
        record.channel_key,
        record.token_hash,
        _utc(record.updated_at),
        record.transcript_seq,
        record.id,
        record.revision,
        json_text([_line(entry) for entry in entries]),
    )


async def _save_postgres(
    db: Db,
    record: ConversationRecord,
    entries: Sequence[TranscriptEntry],
    *,
    scope: str,
    message_id: str | None,
    reply: dict[str, Any] | None,
) -> None:
    driver = await db.driver()
    values = _pg_values(record, entries)
    with storage_errors():
        if message_id is None:
            row = await driver.fetchrow(RAW_SAVE_TURN_WITHOUT_ID, *values)
        else:
            row = await driver.fetchrow(
                RAW_SAVE_TURN, *values, scope, message_id, json_text(reply), _utc(db.now())
            )
    _check_pg_row(db, row, record, scope, message_id)


def _stale(db: Db, record: ConversationRecord) -> ConcurrencyError:
    """The revision check failed: after a read without the lock, the turn was overtaken."""
    return overtaken(record) if db.read_unlocked else stale_revision(record)


def _check_pg_row(
    db: Db,
    row: Mapping[str, Any],
    record: ConversationRecord,
    scope: str,
    message_id: str | None,
) -> None:
    """Raise what the final SELECT of a PostgreSQL turn write says went wrong, if anything."""
    if message_id is None:
        if row["saved"] != 1:
            raise _stale(db, record)
        return
    if row["saved"] == 1 and row["inbound"] == 1:
        return
    if row["handled"] or row["saved"] == 1:
        # Handled before (nothing written), or concurrently by a writer that did not hold the
        # conversation lock (the update stands: the caller must abandon the unit of work).
        raise already_handled(scope, message_id)
    raise _stale(db, record)


def _raise_unless_saved(
    db: Db, outcome: str, record: ConversationRecord, scope: str, message_id: str | None
) -> None:
    if outcome == "handled":
        raise already_handled(scope, message_id or "")
    if outcome == "stale":
        raise _stale(db, record)


def _sqlite_write(
    db: Db,
    record: ConversationRecord,
    entries: Sequence[TranscriptEntry],
    *,
    scope: str,
    message_id: str | None,
    reply: dict[str, Any] | None,
    state: str | None = None,
) -> Callable[[sqlite3.Connection], str]:
    """The SQLite turn write, to run on the writer's thread: "saved", or what went wrong
    ("handled", "stale") having written nothing. `state`: the state's JSON text, if the caller
    has it already."""
    parameters: dict[str, Any] = {
        "b_id": record.id,
        "b_revision": record.revision,
        "state": json_text(record.state.to_json()) if state is None else state,
        "status": record.state.status,
        "reference": record.reference,
        "channel_key": record.channel_key,
        "token_hash": record.token_hash,
        "updated_at": sqlite_time(record.updated_at),
        "transcript_seq": record.transcript_seq,
    }
    if message_id is not None:
        parameters.update(scope=scope, message_id=message_id)
    lines = [
        (
            record.id,
            entry.seq,
            entry.role,
            json_text(entry.payload),
            sqlite_time(entry.created_at),
        )
        for entry in entries
    ]
    inbound = (
        None
        if message_id is None
        else (scope, message_id, json_text(reply), sqlite_time(db.now()), record.id)
    )
    active = record.state.status == "active"

    def write(connection: sqlite3.Connection) -> str:
        """All of the write in one hand-off; what went wrong, if anything."""
        lean, full = (
            (SQLITE_UPDATE_STATE, SQLITE_UPDATE_CONVERSATION)
            if inbound is None
            else (SQLITE_UPDATE_STATE_UNLESS_HANDLED, SQLITE_UPDATE_CONVERSATION_UNLESS_HANDLED)
        )
        updated = connection.execute(lean, parameters).rowcount if active else 0
        if updated != 1:
            updated = connection.execute(full, parameters).rowcount
        if updated != 1:
            if inbound is not None and connection.execute(SQLITE_HANDLED, parameters).fetchone()[0]:
                return "handled"
            return "stale"
        if lines:
            connection.executemany(SQLITE_INSERT_LINE, lines)
        if inbound is not None:
            # Cannot conflict: this connection is the only writer and checked above.
            connection.execute(SQLITE_INSERT_INBOUND, inbound)
        return "saved"

    return write


SQLITE_INSERT_CONVERSATION = """
    INSERT INTO conversations (id, channel, channel_key, token_hash, state, status,
                               revision, reference, created_at, updated_at, transcript_seq,
                               untouched_at, finished_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT DO NOTHING
"""


def _new_conversation_row(
    record: ConversationRecord, moment: Callable[[datetime], Any], state_json: str
) -> tuple[Any, ...]:
    """A new conversation's columns, in the order of `RAW_ADD_CONVERSATION` and
    `SQLITE_INSERT_CONVERSATION`; `moment` gives each database its timestamps' form,
    `state_json` is the state's JSON text."""
    untouched_at, finished_at = sweep_marks(record)
    return (
        record.id,
        record.channel,
        record.channel_key,
        record.token_hash,
        state_json,
        record.state.status,
        record.revision,
        record.reference,
        moment(record.created_at),
        moment(record.updated_at),
        record.transcript_seq,
        None if untouched_at is None else moment(untouched_at),
        None if finished_at is None else moment(finished_at),
    )


async def commit_new(
    db: Db, record: ConversationRecord, entries: Sequence[TranscriptEntry]
) -> bool:
    """See `bot.ports.UnitOfWork.commit_new`: True if done in one step (the unit of work is
    then over); False: nothing was done (PostgreSQL, a transaction already begun), the caller
    adds and commits as before. PostgreSQL: `RAW_ADD_CONVERSATION`, a statement of its own
    outside a transaction (one round trip where BEGIN, two inserts through SQLAlchemy and
    COMMIT were four). SQLite: the inserts and COMMIT in one hand-off."""
    if db.is_postgres and db.in_transaction:
        return False
    state_json = json_text(record.state.to_json())
    if db.is_postgres:
        values = (
            *_new_conversation_row(record, _utc, state_json),
            json_text([_line(entry) for entry in entries]),
        )
        row = await db.commit_statement(RAW_ADD_CONVERSATION, values)
        if row["added"] != 1:
            raise DuplicateError(f"conversation {record.id!r} exists")
        _keep_new(db, record, state_json)
        return True
    row = _new_conversation_row(record, sqlite_time, state_json)
    lines = [
        (record.id, entry.seq, entry.role, json_text(entry.payload), sqlite_time(entry.created_at))
        for entry in entries
    ]

    def add_then_commit(connection: sqlite3.Connection) -> tuple[bool, bool]:
        if connection.execute(SQLITE_INSERT_CONVERSATION, row).rowcount != 1:
            return False, False
        if lines:
            connection.executemany(SQLITE_INSERT_LINE, lines)
        return True, True

    if not await db.run_sqlite_then_commit(add_then_commit):
        raise DuplicateError(f"conversation {record.id!r} exists")
    _keep_new(db, record, state_json)
    return True


def _keep_new(db: Db, record: ConversationRecord, state_json: str) -> None:
    """A new conversation, committed as `record` says, is kept as a turn's write is
    (storage.turn_cache), if this worker keeps them: its first turn needs no read either
    (on SQLite, that read held the single writer through the whole turn)."""
    if db.turn_cache is not None:
        db.turn_cache.put(record, state_json)


# A Telegram turn's read: the chat's active conversation, found by its channel address rather
# than by id, with the same columns as the read by id (`RAW_GET_FOR_TURN`): on the driver's
# connection too, where through SQLAlchemy it was several hand-offs (and on SQLite one more for
# BEGIN IMMEDIATE) and SQLAlchemy's per-statement work (BENCHMARKS.md, "Telegram turn's read
# on the driver's connection").

#: The active conversation of ($1 channel, $2 channel key), locked, newest first as
#: `ConversationRepository.find_active` orders them, with the reply already given to ($3 scope,
#: $4 message id). After waiting for the lock PostgreSQL checks the row again: a conversation
#: ended meanwhile is not returned.
RAW_FIND_ACTIVE_FOR_TURN = (
    _turn_columns("GREATEST")
    + _prior_reply("$3", "$4")
    + """
    FROM conversations c
    WHERE c.channel = $1 AND c.channel_key = $2 AND c.status = 'active'
    ORDER BY c.created_at DESC, c.id DESC
    LIMIT 1
    FOR UPDATE OF c
"""
)
#: No active conversation (a chat's first message): the reply already given, on its own.
RAW_INBOUND_REPLY = "SELECT reply FROM inbound_messages WHERE scope = $1 AND message_id = $2"


#: `RAW_FIND_ACTIVE_FOR_TURN` without the lock (`read_active_for_turn`), run outside a
#: transaction: the write's revision check finds a turn committed in between.
RAW_READ_ACTIVE_FOR_TURN = RAW_FIND_ACTIVE_FOR_TURN.replace("    FOR UPDATE OF c\n", "")
assert "FOR UPDATE" not in RAW_READ_ACTIVE_FOR_TURN


async def pg_find_active_for_turn(
    db: Db, channel: Channel, channel_key: str, *, scope: str, message_id: str
) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
    """See `bot.ports.ConversationRepository.find_active_for_turn` (PostgreSQL): one
    statement when the chat has a conversation, two when it has none."""
    driver = await db.driver()
    with storage_errors():
        found = await _find_active(
            driver, RAW_FIND_ACTIVE_FOR_TURN, channel, channel_key, scope, message_id
        )
    return found


async def pg_read_active_for_turn(
    db: Db, channel: Channel, channel_key: str, *, scope: str, message_id: str
) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
    """See `bot.ports.ConversationRepository.read_active_for_turn` (PostgreSQL): the read of
    `pg_find_active_for_turn` without the lock, outside a transaction
    (`Db.read_for_turn`), as `pg_read_for_turn` is to `pg_get_for_turn`."""

    async def read(driver: Any) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
        return await _find_active(
            driver, RAW_READ_ACTIVE_FOR_TURN, channel, channel_key, scope, message_id
        )

    return await db.read_for_turn(read)


async def _find_active(
    driver: Any, statement: str, channel: Channel, channel_key: str, scope: str, message_id: str
) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
    """The chat's active conversation by `statement` (locked or not) with the reply already
    given to the message id, or that reply alone (`RAW_INBOUND_REPLY`) if there is none."""
    row = await driver.fetchrow(statement, channel, channel_key, scope, message_id)
    if row is None:
        prior = await driver.fetchval(RAW_INBOUND_REPLY, scope, message_id)
        return None, None if prior is None else dict(prior)
    prior = row["prior_reply"]
    return _record(row), None if prior is None else dict(prior)


#: `RAW_FIND_ACTIVE_FOR_TURN` on SQLite (the writer is already ours: BEGIN IMMEDIATE).
SQLITE_FIND_ACTIVE_FOR_TURN = (
    _turn_columns("max")
    + _prior_reply(":scope", ":message_id")
    + """
    FROM conversations c
    WHERE c.channel = :channel AND c.channel_key = :channel_key AND c.status = 'active'
    ORDER BY c.created_at DESC, c.id DESC
    LIMIT 1
"""
)
SQLITE_INBOUND_REPLY = (
    "SELECT reply FROM inbound_messages WHERE scope = :scope AND message_id = :message_id"
)


async def sqlite_find_active_for_turn(
    db: Db, channel: Channel, channel_key: str, *, scope: str, message_id: str
) -> tuple[ConversationRecord | None, dict[str, Any] | None]:
    """See `bot.ports.ConversationRepository.find_active_for_turn` (SQLite): in one hand-off
    to aiosqlite's thread with the unit of work's BEGIN IMMEDIATE, found or not."""
    parameters = {
        "channel": channel,
        "channel_key": channel_key,
        "scope": scope,
        "message_id": message_id,
    }

    def read(connection: sqlite3.Connection) -> tuple[Any, Any]:
        row = connection.execute(SQLITE_FIND_ACTIVE_FOR_TURN, parameters).fetchone()
        if row is not None:
            return row, None
        return None, connection.execute(SQLITE_INBOUND_REPLY, parameters).fetchone()

    row, alone = await db.run_sqlite(read)
    if row is None:
        reply = None if alone is None or alone[0] is None else json.loads(alone[0])
        return None, None if reply is None else dict(reply)
    prior = json.loads(row[11]) if row[11] is not None else None
    return _sqlite_record(row), None if prior is None else dict(prior)


def _sqlite_record(row: Sequence[Any]) -> ConversationRecord:
    """A conversation row read on SQLite as the turn's reads select it (id ... updated_at,
    next_seq), its values as SQLAlchemy's SQLite types store them."""
    (id_, channel, channel_key, token_hash, state, _status, revision) = row[:7]
    reference, created_at, updated_at, next_seq = row[7:11]
    return ConversationRecord(
        id=id_,
        channel=cast(Channel, channel),
        state=ConversationState.from_json(json.loads(state)),
        created_at=from_sqlite_time(created_at),
        updated_at=from_sqlite_time(updated_at),
        revision=revision,
        token_hash=token_hash,
        channel_key=channel_key,
        reference=reference,
        transcript_seq=next_seq,
    )
