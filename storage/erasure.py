"""`bot.ports.Erasure`: every copy of what a person typed, found by its conversation id.

Three tables keep copies beside the conversation's own state: the transcript, the replies kept
for idempotency (the summary repeats every answer) and the outbox (a Telegram reply carries the
same words). All three are keyed by conversation id (migration 0004 for the last two; a web
conversation's replies are found by their scope, its id: `REPLIES_OF_CONVERSATION`), so
erasing a conversation is a few indexed statements inside the caller's transaction. The ids of
its chat messages (migration 0007; no words, but they say that a chat happened) go too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, and_, bindparam, delete, or_, select, tuple_, update

from storage.db import Db
from storage.models import chat_messages, inbound_messages, outbox, transcript_entries

#: The conversation being erased, one parameter for every statement below.
_CONVERSATION: BindParameter[str] = bindparam("b_conversation_id")
ERASE_TRANSCRIPT = delete(transcript_entries).where(
    transcript_entries.c.conversation_id == _CONVERSATION
)
#: Pending or delivered: a pending reply of a cancelled conversation need not be sent.
ERASE_OUTBOX = delete(outbox).where(outbox.c.conversation_id == _CONVERSATION)
ERASE_CHAT_MESSAGES = delete(chat_messages).where(chat_messages.c.conversation_id == _CONVERSATION)
#: A conversation's kept replies: a web conversation's have its id as their scope (the primary
#: key's prefix), a chat's are found by `conversation_id`, whose index holds only the rows of
#: another scope (migration 0012). The second term repeats the index's condition so that
#: either database may use it.
REPLIES_OF_CONVERSATION = or_(
    inbound_messages.c.scope == _CONVERSATION,
    and_(
        inbound_messages.c.conversation_id == _CONVERSATION,
        inbound_messages.c.conversation_id != inbound_messages.c.scope,
    ),
)
DELETE_REPLIES = delete(inbound_messages).where(REPLIES_OF_CONVERSATION)
REPLACE_REPLIES = (
    update(inbound_messages)
    .where(REPLIES_OF_CONVERSATION)
    .values(reply=bindparam("final_reply", type_=inbound_messages.c.reply.type))
)

#: Outbox messages that are finished with: sent, or given up.
FINISHED = ("done", "failed")


def _expired_replies(before: datetime, limit: int) -> Any:
    """Replies received before `before`, keyed or not (a worker of the release before 0004
    wrote no key)."""
    batch = (
        select(inbound_messages.c.scope, inbound_messages.c.message_id)
        .where(inbound_messages.c.created_at < before)
        .order_by(inbound_messages.c.created_at)
        .limit(limit)
    )
    return delete(inbound_messages).where(
        tuple_(inbound_messages.c.scope, inbound_messages.c.message_id).in_(batch)
    )


def _expired_messages(before: datetime, limit: int) -> Any:
    """Finished outbox messages carrying a conversation's words, created before `before`; a
    row written without the key (before 0004) is recognised by its payload."""
    batch = (
        select(outbox.c.id)
        .where(
            outbox.c.status.in_(FINISHED),
            outbox.c.created_at < before,
            or_(
                outbox.c.conversation_id.is_not(None),
                outbox.c.payload["conversation_id"].as_string().is_not(None),
            ),
        )
        .order_by(outbox.c.id)
        .limit(limit)
    )
    return delete(outbox).where(outbox.c.id.in_(batch))


class SqlErasure:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def conversation(
        self, conversation_id: str, *, final_reply: dict[str, Any] | None
    ) -> None:
        key = {"b_conversation_id": conversation_id}
        self._db.forget_turn(conversation_id)
        await self._db.execute(ERASE_TRANSCRIPT, key)
        await self._db.execute(ERASE_OUTBOX, key)
        await self._db.execute(ERASE_CHAT_MESSAGES, key)
        if final_reply is None:
            await self._db.execute(DELETE_REPLIES, key)
        else:
            await self._db.execute(REPLACE_REPLIES, {**key, "final_reply": final_reply})

    async def expired_copies(self, before: datetime, *, limit: int) -> int:
        replies = await self._db.execute(_expired_replies(before, limit))
        messages = await self._db.execute(_expired_messages(before, limit))
        return int(replies.rowcount) + int(messages.rowcount)
