"""The only async orchestration: one database transaction per turn.

A turn: lock the conversation and look up the reply already given to its message id (one
read), answer a repeated message id with that reply, run the pure engine, store a submitted
report and outbox events, save state (with a revision check), the transcript and the reply to
the message id (one write), commit — and only then return the reply. Nothing is acknowledged
before it is durable. Message bodies are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, get_args

from bot import metrics
from bot.config import DEFAULT_LINKS
from bot.engine.engine import Engine
from bot.engine.needs import Match
from bot.engine.text import clean_text, strip_dangerous
from bot.engine.types import (
    ConversationClosed,
    ConversationState,
    Inbound,
    Outbound,
    ReportSubmitted,
    T,
    Text,
    Turn,
)
from bot.i18n import Catalogs
from bot.intake.exit_help import exit_help
from bot.intake.lookups import DirectoryLookup
from bot.intake.reference import new_reference
from bot.intake.rendering import (
    SURVEY_DECLINE,
    SURVEY_START,
    TAPPED_MESSAGE_ID,
    RenderedChoice,
    RenderedLink,
    RenderedMessage,
    RenderedSummaryRow,
    Reply,
    SurveyOffer,
)
from bot.ports import (
    Channel,
    ChatMessageIds,
    ChatSurvey,
    ConversationRecord,
    DuplicateError,
    OutboxMessage,
    OvertakenError,
    Storage,
    StoredReport,
    TranscriptEntry,
    TurnWrites,
    UnitOfWork,
)

log = logging.getLogger(__name__)

REPORT_TOPIC = "report.submitted"
#: A turn that hits a conflict is run again: a reference collision (about 1 in 10^11 per
#: report), a duplicate delivery that raced another worker, a chat's first message opened by
#: two workers at once.
MAX_TURN_ATTEMPTS = 5
#: A conversation keeps at most this many transcript lines (a whole report with a few changes
#: takes about a hundred); older ones are dropped. Lines are bounded too (an answer longer
#: than its step allows is refused and not kept), so a transcript has a size bound.
MAX_TRANSCRIPT_LINES = 200
#: A view returns the newest transcript lines that add up to at most this many characters,
#: so one GET cannot make the worker build a response of more than a few megabytes.
TRANSCRIPT_VIEW_MAX_CHARS = 200_000
#: How long after a conversation ends (submitted, cancelled, ended) its token still opens it
#: and its transcript is kept: long enough to read the confirmation again after a reload.
#: Then the token expires and what was typed is erased (the report keeps what matters).
ENDED_RETENTION = timedelta(hours=1)
#: How long a chat's message ids are kept for the exit word to delete: a bot can delete a
#: message only for 48 hours after it was sent (Bot API deleteMessages).
CHAT_MESSAGE_RETENTION = timedelta(hours=48)
#: Message ids per delete: the most one Bot API deleteMessages call takes.
DELETE_BATCH = 100


#: Where a submitted conversation keeps whether its survey is still offered ("offered"), was
#: taken or was declined. Only that: the survey's answers never come near the report.
SURVEY_KEY = "survey"
SURVEY_OFFERED, SURVEY_TAKEN, SURVEY_DECLINED = "offered", "taken", "declined"
SURVEY_OFFER_TEXT = T(
    "Would you answer 3 short questions about this chat? It is optional. Your answers are kept "
    "apart from your report, without your name."
)
SURVEY_START_LABEL = T("Yes, answer the questions")
SURVEY_DECLINE_LABEL = T("No, thank you")
SURVEY_DECLINED_TEXT = T("All right. Thank you for using this chat.")


class ConversationNotFound(LookupError):
    pass


class SurveyNotOffered(LookupError):
    """No survey is offered for that conversation to this client: it is not a report this
    client sent, its survey was taken or declined, or its time has passed."""


def offer_answer(inbound: Inbound) -> tuple[str, str | None] | None:
    """A press of a survey offer's button: (`survey_start` or `survey_decline`, the offered
    conversation's id when the choice names one); None for anything else."""
    if inbound.kind != "choice":
        return None
    action, _, target = inbound.value.partition(":")
    if action not in (SURVEY_START, SURVEY_DECLINE):
        return None
    return action, target or None


class InvalidToken(PermissionError):
    """The web token does not belong to this conversation."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _token_matches(record: ConversationRecord, token: str) -> bool:
    """Constant-time comparison of hashes; a conversation without a token matches none."""
    if record.token_hash is None:
        return False
    return hmac.compare_digest(record.token_hash, hash_token(token))


def clean_inbound(inbound: Inbound) -> Inbound:
    """The one place every inbound value is cleaned on its way in, whatever the channel:
    typed text as `clean_text` says (as typed, less what is dangerous to store or show),
    button data, commands and start parameters without those characters either. PostgreSQL
    refuses NUL in text: a NUL in a button's data would otherwise fail the turn on every
    redelivery."""
    if inbound.kind == "text":
        return Inbound("text", clean_text(inbound.value))
    value = strip_dangerous(inbound.value)
    return inbound if value == inbound.value else Inbound(inbound.kind, value)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _emptied(state: ConversationState) -> ConversationState:
    """A closed conversation's state with nothing typed left in it (answers, scratch such as
    a typed provider name, history): only where it ended and in which language."""
    return ConversationState(step=state.step, locale=state.locale, status=state.status)


@dataclass(frozen=True, slots=True)
class ReplyRoute:
    """How a turn's reply leaves when a channel's own sender delivers it (a Telegram chat)
    rather than the answer to the request (the web chat: no route). The reply is a row of
    the outbox `topic`; with `claim_for`, claimed in the turn's own transaction for the
    caller's sender, for that many seconds (`Reply.claimed`, `Outbox.add`); with
    `tapped_message_id`, it names the chat's message whose button it answers, so that the
    sender takes that message's buttons away as the reply goes (`TAPPED_MESSAGE_ID`)."""

    topic: str
    claim_for: float | None = None
    tapped_message_id: int | None = None


def reply_route(
    topic: str | None, *, claim_for: float | None = None, tapped_message_id: int | None = None
) -> ReplyRoute | None:
    """The route of a caller that named an outbox topic, or None (the reply is answered)."""
    return ReplyRoute(topic, claim_for, tapped_message_id) if topic else None


def _kept(reply: Reply, route: ReplyRoute | None) -> dict[str, Any]:
    """The reply as kept for a repeated message id. A reply the outbox sends is kept without
    its words: a repeated update is not answered again (its outbox row went once), so they
    would only be one more copy of what the person was told, and of what they typed (a
    summary quotes it), written with every turn."""
    return reply.to_record(words=route is None)


def _replayed(prior: dict[str, Any]) -> Reply:
    """The reply already given to a repeated message id."""
    replayed = Reply.from_record(prior)
    replayed.replayed = True
    return replayed


class _ServiceNeeds:
    """The engine's `Needs`, answered by the service from memory (no I/O here: the
    directory index was refreshed before the transaction began). Reads the service's
    attributes at each call, so a test that swaps one is heard. One per channel: what the
    quick exit hides differs by channel (bot/intake/exit_help.py)."""

    __slots__ = ("_channel", "_service")

    def __init__(self, service: IntakeService, channel: Channel | None = None) -> None:
        self._service = service
        self._channel = channel

    def search_directory(self, typed: str, within: str | None) -> Sequence[Match]:
        return self._service.directory.search(typed, within)

    def find_location(self, location_id: str) -> Match | None:
        return self._service.directory.get(location_id)

    def new_reference(self) -> str:
        return self._service._new_reference()

    def acknowledgement(self, report: Mapping[str, Any]) -> str | None:
        return self._service._acknowledgement(dict(report))

    def exit_help(self) -> Text | None:
        return exit_help(self._channel) if self._channel is not None else None


class IntakeService:
    def __init__(
        self,
        storage: Storage,
        engine: Engine,
        catalogs: Catalogs,
        directory: DirectoryLookup,
        *,
        clock: Callable[[], datetime] = utcnow,
        reference_factory: Callable[[], str] = new_reference,
        acknowledgement: Callable[[dict[str, Any]], str | None] = lambda _report: None,
        links: Mapping[str, str] | None = None,
        survey: Engine | None = None,
    ) -> None:
        self.storage = storage
        self.engine = engine
        #: The survey about the chat, offered after a report is sent (None: not offered).
        #: A conversation runs it when its step is one of the survey's (the dialogues share
        #: no step id), so no column says which dialogue a conversation runs.
        self.survey = survey
        self.catalogs = catalogs
        self.directory = directory
        self._clock = clock
        self._new_reference = reference_factory
        #: How a report with these fields will be acknowledged ("email", "sms" or None), so
        #: the confirmation promises only what delivery will send (bot/outbox/routes.py).
        self._acknowledgement = acknowledgement
        #: What the engine asks of the outside, answered from memory.
        self._needs = _ServiceNeeds(self)
        self._channel_needs = {c: _ServiceNeeds(self, c) for c in get_args(Channel)}
        #: Where each link key a dialogue names goes (configuration: bot.config.DEFAULT_LINKS).
        self._links: Mapping[str, str] = dict(DEFAULT_LINKS if links is None else links)

    # ------------------------------------------------------------------ web and terminal

    async def start(
        self,
        *,
        channel: Channel,
        locale_hints: tuple[str | None, ...] = (),
        channel_key: str | None = None,
        start_param: str | None = None,
        with_token: bool = False,
        outbox_topic: str | None = None,
    ) -> Reply:
        """Open a new conversation and say the welcome."""
        await self.directory.refresh()
        token = secrets.token_urlsafe(32) if with_token else None
        record, turn = self._open(
            channel,
            locale_hints,
            start_param,
            channel_key=channel_key,
            token_hash=hash_token(token) if token else None,
        )
        reply = self._reply(record, turn)
        route = reply_route(outbox_topic)
        async with self.storage.unit_of_work() as uow:
            if route is not None:
                await self._store_new(uow, record, turn, reply, route)
                await uow.commit()
            else:  # the conversation and its lines, committed in one step
                await uow.commit_new(record, self._transcript(record, turn, reply))
        reply.token = token
        return reply

    async def handle(
        self,
        conversation_id: str,
        inbound: Inbound,
        *,
        message_id: str | None = None,
        outbox_topic: str | None = None,
        token: str | None = None,
    ) -> Reply:
        """Apply one inbound message; a repeated `message_id` returns the first reply.
        With `token`, the web token is checked inside the turn's own transaction (one round of
        database work per turn, not two)."""
        inbound = clean_inbound(inbound)
        await self.directory.refresh()
        scope = conversation_id
        route = reply_route(outbox_topic)
        for attempt in range(MAX_TURN_ATTEMPTS):
            try:
                async with self.storage.unit_of_work() as uow:
                    # Unlocked where the storage allows (a turn committed meanwhile fails
                    # the write's revision check: OvertakenError, and the turn runs again);
                    # the last attempt locks, so it cannot lose to another writer.
                    read = (
                        uow.conversations.get_for_turn
                        if attempt == MAX_TURN_ATTEMPTS - 1
                        else uow.conversations.read_for_turn
                    )
                    record, prior = await read(conversation_id, scope=scope, message_id=message_id)
                    if record is None:
                        raise ConversationNotFound(conversation_id)
                    if token is not None and not self._token_opens(record, token):
                        raise InvalidToken(conversation_id)
                    answer = offer_answer(inbound)
                    if prior is not None:
                        reply = _replayed(prior)
                        await uow.commit()
                    elif (
                        answer is not None
                        and answer[0] == SURVEY_DECLINE
                        and answer[1] in (None, record.id)
                        and self._survey_offered(record)
                    ):
                        reply = self._decline_survey(record)
                        await uow.commit_turn(
                            record,
                            [],
                            scope=scope,
                            message_id=message_id,
                            reply=reply.to_record() if message_id is not None else None,
                        )
                    else:
                        reply = await self._turn(
                            uow, record, inbound, message_id, route, scope=scope
                        )
                    return reply
            except DuplicateError:
                # Nothing was committed, so the turn can run again: the same message id was
                # handled by a concurrent request that committed meanwhile (the rerun replays
                # its reply), or a reference number collided (the rerun draws a new one). No
                # choice id is named here: which choice submits is the dialogue's business.
                log.info("retrying a turn after a duplicate (a concurrent repeat or a collision)")
                continue
            except OvertakenError:
                # Another turn of this conversation committed after the unlocked read; nothing
                # of this one was written. Run it again on what that turn left.
                log.info("retrying a turn after a concurrent turn of the same conversation")
                continue
        raise RuntimeError("could not apply the turn after repeated conflicts")

    async def handle_for_channel_key(
        self,
        channel: Channel,
        channel_key: str,
        inbound: Inbound,
        *,
        message_id: str,
        scope: str,
        locale_hints: tuple[str | None, ...] = (),
        outbox_topic: str | None = None,
        chat_message_id: int | None = None,
        tapped_message_id: int | None = None,
        claim_for: float | None = None,
    ) -> Reply:
        """For channels addressed by a key (a Telegram chat): find the active conversation or
        open a new one, apply the message, all in one transaction; idempotent on
        (`scope`, `message_id`) across the whole channel.

        `chat_message_id`: the id the chat gave the person's message, from a channel whose
        messages a bot can delete. Such ids (and those of our replies, recorded as they are
        delivered) are kept, so that the exit word deletes them through `outbox_topic`.
        `tapped_message_id`: the chat's message whose button this is. The reply's outbox row
        names it, so that the channel's sender takes that message's buttons away as the reply
        goes (and with the reply's retries), not as a call of its own after every tap.
        `claim_for`: the reply's outbox row is claimed in the same transaction for the
        caller's sender (`Reply.claimed`; see `Outbox.add`). Together: the reply's route
        (`ReplyRoute`)."""
        inbound = clean_inbound(inbound)
        await self.directory.refresh()
        route = reply_route(outbox_topic, claim_for=claim_for, tapped_message_id=tapped_message_id)
        for attempt in range(MAX_TURN_ATTEMPTS):
            try:
                async with self.storage.unit_of_work() as uow:
                    reply = await self._channel_turn(
                        uow,
                        channel,
                        channel_key,
                        inbound,
                        message_id,
                        scope,
                        locale_hints,
                        route,
                        chat_message_id,
                        locked=attempt == MAX_TURN_ATTEMPTS - 1,
                    )
                    return reply
            except DuplicateError:
                # Another worker opened this chat's conversation at the same moment (the unique
                # active-conversation index refused ours), or a reference number collided:
                # run the turn again, which now finds that conversation.
                log.info("retrying a %s turn after a concurrent duplicate", channel)
            except OvertakenError:
                # As in `handle`: another turn of the chat's conversation committed after the
                # unlocked read; nothing of this one was written (its reply's outbox row and
                # message id neither). Run it again on what that turn left.
                log.info("retrying a %s turn after a concurrent turn of the same chat", channel)
        raise RuntimeError("could not apply the turn after repeated conflicts")

    async def _channel_turn(
        self,
        uow: UnitOfWork,
        channel: Channel,
        channel_key: str,
        inbound: Inbound,
        message_id: str,
        scope: str,
        locale_hints: tuple[str | None, ...],
        route: ReplyRoute | None,
        chat_message_id: int | None = None,
        *,
        locked: bool = True,
    ) -> Reply:
        """`handle_for_channel_key`'s turn in `uow`, committed. The turn of an open
        conversation reads it without the lock where the storage allows, unless `locked` (a
        turn committed meanwhile fails the write's revision check: OvertakenError, and the
        caller runs the turn again), and writes its reply's outbox row and the person's
        message id with its save and commit, in one step (`commit_turn`: on PostgreSQL one
        statement, where BEGIN, the locked read, three writes and COMMIT were six round trips;
        on SQLite one hand-off to the writer's thread with the read's, where they were four)."""
        read = (
            uow.conversations.find_active_for_turn
            if locked
            else uow.conversations.read_active_for_turn
        )
        record, prior = await read(channel, channel_key, scope=scope, message_id=message_id)
        if prior is not None:
            await uow.commit()
            return _replayed(prior)
        if record is not None:
            return await self._turn(
                uow,
                record,
                inbound,
                message_id,
                route,
                scope=scope,
                chat_message_id=chat_message_id,
            )
        answer = offer_answer(inbound)
        if answer is not None:
            # A survey offer's button under an earlier confirmation, with no chat going on.
            reply = await self._answer_offer_by_key(
                uow, channel, channel_key, answer, locale_hints, route
            )
            await uow.inbound.put(
                scope,
                message_id,
                _kept(reply, route),
                conversation_id=reply.conversation_id or None,
            )
            await uow.commit()
            return reply
        start_param = inbound.value if inbound.kind == "start" else None
        record, turn = self._open(channel, locale_hints, start_param, channel_key=channel_key)
        translate = self.catalogs.translator(record.state.locale)
        if self.engine.interpret(inbound, translate) == Inbound("command", "exit"):
            # The exit word in a chat whose conversation has ended (sent, cancelled): it
            # still leaves at once and deletes what is kept, instead of greeting anew.
            await uow.conversations.add(record)
            return await self._turn(
                uow,
                record,
                inbound,
                message_id,
                route,
                scope=scope,
                chat_message_id=chat_message_id,
            )
        reply = self._reply(record, turn)
        await self._store_new(uow, record, turn, reply, route)
        kept = self._chat_message(record, chat_message_id)
        if kept is not None:
            await uow.chat_messages.add(kept, at=self._clock())
        await uow.inbound.put(scope, message_id, _kept(reply, route), conversation_id=record.id)
        await uow.commit()
        return reply

    async def view(
        self, conversation_id: str, *, with_transcript: bool = True, token: str | None = None
    ) -> Reply:
        async with self.storage.unit_of_work() as uow:
            record = await uow.conversations.get(conversation_id)
            if record is None:
                raise ConversationNotFound(conversation_id)
            if token is not None and not self._token_opens(record, token):
                raise InvalidToken(conversation_id)
            transcript = (
                await uow.transcripts.list(conversation_id, max_chars=TRANSCRIPT_VIEW_MAX_CHARS)
                if with_transcript
                else None
            )
        reply = self._current(record)
        if transcript is not None:
            reply.transcript = [
                {"role": e.role, **e.payload, "at": e.created_at.isoformat()} for e in transcript
            ]
        return reply

    async def view_for_channel_key(self, channel: Channel, channel_key: str) -> Reply | None:
        """The current question of a channel address's active conversation, if it has one
        (e.g. to repeat it after a Telegram message we cannot read)."""
        async with self.storage.unit_of_work() as uow:
            record = await uow.conversations.find_active(channel, channel_key)
        return None if record is None else self._current(record)

    def _token_opens(self, record: ConversationRecord, token: str) -> bool:
        """The token matches, and has not expired with its conversation's end."""
        if not _token_matches(record, token):
            return False
        ended = record.state.status != "active"
        return not (ended and record.updated_at < self._clock() - ENDED_RETENTION)

    def _current(self, record: ConversationRecord) -> Reply:
        engine = self._engine_for(record.state)
        return self._reply(record, Turn(record.state, engine.prompt(record.state)))

    # ------------------------------------------------------------------ the survey

    async def start_survey(
        self,
        conversation_id: str,
        *,
        token: str | None = None,
        with_token: bool = False,
    ) -> Reply:
        """Open the survey offered after conversation `conversation_id`'s report (for the web,
        only with that conversation's `token`; the terminal holds the id itself). The new
        conversation has its own token, shown once. Raises SurveyNotOffered."""
        new_token = secrets.token_urlsafe(32) if with_token else None
        async with self.storage.unit_of_work() as uow:
            record, _prior = await uow.conversations.get_for_turn(
                conversation_id, scope=conversation_id, message_id=None
            )
            if record is None or not self._survey_offered(record):
                raise SurveyNotOffered(conversation_id)
            if token is not None and not self._token_opens(record, token):
                raise SurveyNotOffered(conversation_id)
            reply = await self._open_survey(
                uow, record, token_hash=hash_token(new_token) if new_token else None
            )
            await uow.commit()
        reply.token = new_token
        return reply

    async def decline_survey(self, conversation_id: str) -> Reply:
        """The terminal's "no" to the offer. Raises SurveyNotOffered."""
        async with self.storage.unit_of_work() as uow:
            record, _prior = await uow.conversations.get_for_turn(
                conversation_id, scope=conversation_id, message_id=None
            )
            if record is None or not self._survey_offered(record):
                raise SurveyNotOffered(conversation_id)
            reply = self._decline_survey(record)
            await uow.conversations.update(record)
            await uow.commit()
        return reply

    async def survey_answers(self, *, since: date | None = None) -> list[ChatSurvey]:
        async with self.storage.unit_of_work() as uow:
            return await uow.surveys.list(since=since)

    async def purge_surveys(self, older_than: timedelta) -> int:
        """Delete survey answers of days more than `older_than` ago; returns how many."""
        before = (self._clock() - older_than).date()
        async with self.storage.unit_of_work() as uow:
            purged = await uow.surveys.purge(before)
            await uow.commit()
        return purged

    def _engine_for(self, state: ConversationState) -> Engine:
        if self.survey is not None and state.step in self.survey.dialog.by_id:
            return self.survey
        return self.engine

    def _survey_offered(self, record: ConversationRecord) -> bool:
        return (
            self.survey is not None
            and record.state.status == "submitted"
            and record.state.scratch.get(SURVEY_KEY) == SURVEY_OFFERED
            and self._engine_for(record.state) is self.engine
        )

    def _decline_survey(self, record: ConversationRecord) -> Reply:
        """Mark the offer declined (the caller saves the record; `updated_at` is left as it
        was, so the token still expires with the conversation) and say so."""
        record.state.scratch[SURVEY_KEY] = SURVEY_DECLINED
        locale = record.state.locale
        return Reply(
            conversation_id=record.id,
            locale=locale,
            step=record.state.step,
            messages=[RenderedMessage(self.catalogs.render(SURVEY_DECLINED_TEXT, locale))],
            done=True,
            reference=record.reference,
            rtl=self.catalogs.is_rtl(locale),
        )

    async def _open_survey(
        self,
        uow: UnitOfWork,
        offered: ConversationRecord,
        *,
        token_hash: str | None = None,
        route: ReplyRoute | None = None,
    ) -> Reply:
        """Take the offer of `offered` (locked by the caller) and store the survey's new
        conversation, in the same channel, language and chat; nothing links the two."""
        assert self.survey is not None
        offered.state.scratch[SURVEY_KEY] = SURVEY_TAKEN
        await uow.conversations.update(offered)
        turn = self.survey.start(offered.state.locale)
        record = self._new_record(
            offered.channel, turn, channel_key=offered.channel_key, token_hash=token_hash
        )
        reply = self._reply(record, turn)
        await self._store_new(uow, record, turn, reply, route)
        return reply

    async def _answer_offer_by_key(
        self,
        uow: UnitOfWork,
        channel: Channel,
        channel_key: str,
        answer: tuple[str, str | None],
        locale_hints: tuple[str | None, ...],
        route: ReplyRoute | None,
    ) -> Reply:
        """A survey offer's button in a chat addressed by key (Telegram): the offered
        conversation must be this chat's. An offer no longer open is answered with the
        engine's "this conversation has ended"."""
        action, target = answer
        record = None
        if target is not None:
            record, _prior = await uow.conversations.get_for_turn(
                target, scope=target, message_id=None
            )
        if (
            record is not None
            and record.channel == channel
            and record.channel_key == channel_key
            and self._survey_offered(record)
        ):
            if action == SURVEY_START:
                return await self._open_survey(uow, record, route=route)
            reply = self._decline_survey(record)
            await uow.conversations.update(record)
        else:
            locale = self.catalogs.negotiate(*locale_hints)
            ended = self.engine.dialog.messages["ended"]
            reply = Reply(
                conversation_id=record.id if record is not None else "",
                locale=locale,
                step="",
                messages=[RenderedMessage(self.catalogs.render(ended, locale))],
                done=True,
                reference=None,
                rtl=self.catalogs.is_rtl(locale),
            )
        if route is not None:
            known = record.id if record is not None else None
            await self._outbox_reply(uow, channel_key, known, reply, route)
        return reply

    async def _store_survey(
        self, uow: UnitOfWork, record: ConversationRecord, event: ReportSubmitted
    ) -> None:
        """The survey's answers, by day only and with nothing that links them to the report,
        this conversation or the person."""
        assert self.survey is not None
        answers = {k: v for k, v in event.report.items() if k != "locale"}
        await uow.surveys.add(
            ChatSurvey(
                day=self._clock().date(),
                channel=record.channel,
                locale=record.state.locale,
                answers=answers,
            )
        )
        labels: list[tuple[str, str]] = []
        for step_id, value in answers.items():
            if value is None:
                labels.append((step_id, "skipped"))
            elif self.survey.dialog.step(step_id).kind == "choice":
                labels.append((step_id, str(value)))
            else:  # what was typed is never a label
                labels.append((step_id, "answered"))
        metrics.record_survey_answers(labels)

    async def purge_idle(self, idle_for: timedelta, *, batch: int = 500) -> int:
        """End conversations nobody has touched for `idle_for` and erase what was typed in
        them (answers, transcript, kept replies, chat messages in the outbox), each batch in
        one transaction: health and safeguarding details are not kept in abandoned chats.
        Submitted reports are not touched. Returns how many were ended."""
        cutoff = self._clock() - idle_for
        ended = 0
        while True:
            async with self.storage.unit_of_work() as uow:
                idle = await uow.conversations.list_idle(cutoff, limit=batch)
                for record in idle:
                    end_step = self._engine_for(record.state).dialog.step_of_kind("ended")
                    record.state = ConversationState(
                        step=end_step or "ended", locale=record.state.locale, status="ended"
                    )
                    record.updated_at = self._clock()
                    await uow.erasure.conversation(record.id, final_reply=None)
                    await uow.conversations.update(record)
                await uow.commit()
            ended += len(idle)
            if len(idle) < batch:
                return ended

    async def purge_kept_replies(self, keep_for: timedelta, *, batch: int = 500) -> int:
        """Erase the replies kept for idempotency, and the delivered chat messages, older than
        `keep_for`: the summary and confirmation repeat the answers, and are kept only as long
        as a retry of the same message can arrive (Telegram keeps an update for 24 hours).
        The report itself stays in `reports`. Returns how many rows were erased."""
        cutoff = self._clock() - keep_for
        erased = 0
        while True:
            async with self.storage.unit_of_work() as uow:
                done = await uow.erasure.expired_copies(cutoff, limit=batch)
                await uow.commit()
            erased += done
            if done == 0:
                return erased

    async def purge_untouched(
        self, older_than: timedelta, *, channel: Channel = "web", batch: int = 500
    ) -> int:
        """Delete conversations opened more than `older_than` ago that never had a turn: a
        flood of empty conversations cannot fill the database. Nothing typed is lost (nothing
        was typed); a person coming back that late simply starts again. Returns how many."""
        cutoff = self._clock() - older_than
        deleted = 0
        while True:
            async with self.storage.unit_of_work() as uow:
                count = await uow.conversations.delete_untouched(channel, cutoff, limit=batch)
                await uow.commit()
            deleted += count
            if count < batch:
                return deleted

    async def erase_finished(
        self, older_than: timedelta = ENDED_RETENTION, *, batch: int = 200
    ) -> int:
        """Erase what was typed in conversations that ended more than `older_than` ago: their
        transcript, the replies remembered for repeated message ids, and the answers in their
        state (a submitted report keeps its own copy). Their tokens have expired by then.
        Returns how many conversations were erased."""
        cutoff = self._clock() - older_than
        erased = 0
        while True:
            async with self.storage.unit_of_work() as uow:
                finished = await uow.conversations.list_finished_with_data(cutoff, limit=batch)
                for record in finished:
                    state = record.state
                    record.state = ConversationState(
                        step=state.step, locale=state.locale, status=state.status
                    )
                    await uow.transcripts.erase(record.id)
                    await uow.inbound.erase(record.id)
                    await uow.conversations.update(record)
                await uow.commit()
            erased += len(finished)
            if len(finished) < batch:
                return erased

    async def mark_unswept(self) -> int:
        """Let `erase_finished` see finished conversations with data that it would miss: those
        a worker of the release before migration 0010 ended during a rolling upgrade (it did
        not mark them). A scan of every conversation, run by the daily purge."""
        async with self.storage.unit_of_work() as uow:
            marked = await uow.conversations.mark_unswept()
            await uow.commit()
        return marked

    # ------------------------------------------------------------------ the turn

    async def _turn(
        self,
        uow: UnitOfWork,
        record: ConversationRecord,
        inbound: Inbound,
        message_id: str | None,
        route: ReplyRoute | None,
        *,
        scope: str,
        chat_message_id: int | None = None,
    ) -> Reply:
        """Apply `inbound` to a conversation read by the caller, whose message id (if any)
        had no reply yet, then save and commit in one step (`commit_turn`): the unit of work
        is over when this returns."""
        started = time.perf_counter()
        translate = self.catalogs.translator(record.state.locale)
        engine = self._engine_for(record.state)
        # The engine reads a typed command word (in English or the person's language) before
        # anything is looked up, so a command is never searched for as a service name.
        interpreted = engine.interpret(inbound, translate)
        too_long = self._too_long(engine, record.state, interpreted)
        needs = self._channel_needs.get(record.channel, self._needs)
        turn = engine.handle(record.state, interpreted, translate, needs)
        record.state = turn.state
        record.updated_at = self._clock()
        closed = any(isinstance(e, ConversationClosed) for e in turn.events)
        for event in turn.events:
            if isinstance(event, ReportSubmitted) and engine is self.survey:
                await self._store_survey(uow, record, event)
                # The answers are stored apart: nothing typed in the survey stays beside them.
                closed = True
            elif isinstance(event, ReportSubmitted):
                record.reference = event.report["reference"]
                await uow.reports.add(self._stored_report(record, event))
                await uow.outbox.add(
                    [OutboxMessage(REPORT_TOPIC, record.reference, {"reference": record.reference})]
                )
                if self.survey is not None:
                    record.state.scratch[SURVEY_KEY] = SURVEY_OFFERED
        reply = self._reply(record, turn)
        entries: list[TranscriptEntry] = []
        to_delete: list[int] = []
        kept: ChatMessageIds | None = None
        if reply.exit and record.channel_key is not None and chat_message_id is not None:
            # Every message id kept for this chat, of any of its conversations, and this one.
            to_delete = await uow.chat_messages.take(record.channel, record.channel_key)
            to_delete.append(chat_message_id)
        elif not closed:  # a closed conversation's erasure (below) forgets its message ids
            kept = self._chat_message(record, chat_message_id)
        if closed:
            # Cancelled or not ours: keep nothing that was typed, in any table. This turn's
            # own reply (it says "cancelled", or where to go instead) is all that stays, so
            # that a late retry of any of the conversation's messages is answered with it.
            record.state = _emptied(record.state)
            await uow.erasure.conversation(record.id, final_reply=_kept(reply, route))
        else:
            entries = self._transcript(record, turn, reply, user_input=inbound, too_long=too_long)
            if record.transcript_seq - 1 > MAX_TRANSCRIPT_LINES:
                await uow.transcripts.erase(
                    record.id, before_seq=record.transcript_seq - MAX_TRANSCRIPT_LINES
                )
        if route is not None and to_delete:
            await self._delete_via_outbox(uow, record, to_delete, route.topic)
        # The reply's outbox row and the person's message id go with the turn's own write:
        # only if it happens, and where the storage can, in the same statement.
        sent = (
            None
            if route is None
            else self._reply_message(record.channel_key or record.id, record.id, reply, route)
        )
        writes = (
            None
            if sent is None and kept is None
            else TurnWrites(
                self._clock(),
                reply=sent,
                claim_for=None if route is None else route.claim_for,
                chat_message=kept,
            )
        )
        reply.claimed = await uow.commit_turn(
            record,
            entries,
            scope=scope,
            message_id=message_id,
            reply=_kept(reply, route) if message_id is not None else None,
            writes=writes,
        )
        metrics.record_turn(record.channel, started)
        return reply

    def _open(
        self,
        channel: Channel,
        locale_hints: tuple[str | None, ...],
        start_param: str | None,
        *,
        channel_key: str | None,
        token_hash: str | None = None,
    ) -> tuple[ConversationRecord, Turn]:
        """A new conversation at its welcome, not yet stored. No I/O: one caller is inside
        a unit of work, and the directory index was refreshed before it began."""
        turn = self.engine.start(self.catalogs.negotiate(*locale_hints), start_param, self._needs)
        return self._new_record(channel, turn, channel_key=channel_key, token_hash=token_hash), turn

    def _new_record(
        self, channel: Channel, turn: Turn, *, channel_key: str | None, token_hash: str | None
    ) -> ConversationRecord:
        """A new conversation's record at its first turn (either dialogue), not yet stored."""
        now = self._clock()
        return ConversationRecord(
            id=str(uuid.uuid4()),
            channel=channel,
            state=turn.state,
            created_at=now,
            updated_at=now,
            token_hash=token_hash,
            channel_key=channel_key,
        )

    def _too_long(self, engine: Engine, state: ConversationState, inbound: Inbound) -> bool:
        """Typed text longer than the current step takes: the engine refuses it, the
        transcript keeps only a note of it, and the directory is not searched for it."""
        step = engine.dialog.by_id.get(state.step)
        return inbound.kind == "text" and step is not None and len(inbound.value) > step.max_length

    async def _store_new(
        self,
        uow: UnitOfWork,
        record: ConversationRecord,
        turn: Turn,
        reply: Reply,
        route: ReplyRoute | None,
    ) -> None:
        """Store a new conversation with the transcript of its first turn."""
        entries = self._transcript(record, turn, reply)
        await uow.conversations.add(record)
        await uow.transcripts.append(record.id, entries)
        if route is not None:
            await self._outbox_reply(uow, record.channel_key or record.id, record.id, reply, route)

    def _transcript(
        self,
        record: ConversationRecord,
        turn: Turn,
        reply: Reply,
        *,
        user_input: Inbound | None = None,
        too_long: bool = False,
    ) -> list[TranscriptEntry]:
        """The turn's transcript lines, numbered from `record.transcript_seq`, which is
        advanced past them (and saved with the record)."""
        now = self._clock()
        seq = record.transcript_seq
        entries: list[TranscriptEntry] = []
        if user_input is not None and too_long:
            # Refused for its length: a note of that, never the text itself.
            note = {"text": "", "kind": "text", "value": "", "refused": "too_long"}
            entries.append(
                TranscriptEntry(seq, "user", {**note, "length": len(user_input.value)}, now)
            )
            seq += 1
        elif user_input is not None:
            shown = (
                self.catalogs.render(turn.echo, record.state.locale)
                if turn.echo is not None
                else user_input.value
            )
            entries.append(
                TranscriptEntry(
                    seq,
                    "user",
                    {"text": shown, "kind": user_input.kind, "value": user_input.value},
                    now,
                )
            )
            seq += 1
        for message in reply.messages:
            entries.append(TranscriptEntry(seq, "bot", message.to_record(), now))
            seq += 1
        record.transcript_seq = seq
        return entries

    async def keep_chat_messages(
        self, channel: Channel, channel_key: str, message_ids: Sequence[int]
    ) -> None:
        """Keep the ids of a chat's messages that no turn saw (a photo we cannot read, our note
        about it), so the exit word deletes them too; with the chat's active conversation, if
        any, so erasing it forgets them (otherwise the 48-hour purge does)."""
        if not message_ids:
            return
        async with self.storage.unit_of_work() as uow:
            record = await uow.conversations.find_active(channel, channel_key)
            owner = None if record is None else record.id
            ids = ChatMessageIds(channel, channel_key, tuple(message_ids), owner)
            await uow.chat_messages.add(ids, at=self._clock())
            await uow.commit()

    def _chat_message(
        self, record: ConversationRecord, chat_message_id: int | None
    ) -> ChatMessageIds | None:
        """The person's message id to keep with the conversation, if the chat gave one."""
        if chat_message_id is None or record.channel_key is None:
            return None
        return ChatMessageIds(record.channel, record.channel_key, (chat_message_id,), record.id)

    async def _delete_via_outbox(
        self, uow: UnitOfWork, record: ConversationRecord, message_ids: list[int], topic: str
    ) -> None:
        """The chat's messages deleted by the channel's own delivery, `DELETE_BATCH` ids a
        row (the Bot API's limit per call), in the chat's order: before the exit's reply.
        The rows carry ids only, no words, so erasing the conversation leaves them."""
        key = record.channel_key or record.id
        batches = [
            message_ids[start : start + DELETE_BATCH]
            for start in range(0, len(message_ids), DELETE_BATCH)
        ]
        await uow.outbox.add(
            [OutboxMessage(topic, key, {"chat_id": key, "delete": batch}) for batch in batches]
        )

    async def purge_chat_messages(
        self, older_than: timedelta = CHAT_MESSAGE_RETENTION, *, batch: int = 1000
    ) -> int:
        """Forget chat message ids kept longer than a bot may delete them (48 hours);
        returns how many."""
        cutoff = self._clock() - older_than
        purged = 0
        while True:
            async with self.storage.unit_of_work() as uow:
                count = await uow.chat_messages.purge(cutoff, limit=batch)
                await uow.commit()
            purged += count
            if count < batch:
                return purged

    async def _outbox_reply(
        self,
        uow: UnitOfWork,
        key: str,
        conversation_id: str | None,
        reply: Reply,
        route: ReplyRoute,
    ) -> None:
        """The reply's outbox row (`_reply_message`), claimed for the caller's sender if it
        asked (`Reply.claimed`)."""
        message = self._reply_message(key, conversation_id, reply, route)
        if message is not None:
            reply.claimed = await uow.outbox.add([message], claim_for=route.claim_for)

    def _reply_message(
        self,
        key: str,
        conversation_id: str | None,
        reply: Reply,
        route: ReplyRoute,
    ) -> OutboxMessage | None:
        """One outbox row per reply (the channel sends the turn's messages together): the
        reply's messages, and the survey offer as a last message with its two buttons (its
        choices name the offered conversation: the chat may have moved on). None if there is
        nothing to send. The route's tapped message goes with it, as `TAPPED_MESSAGE_ID`."""
        messages = list(reply.messages)
        if reply.survey_offer is not None:
            messages.append(reply.survey_offer.message())
        if not messages:
            return None
        payload: dict[str, Any] = {
            "chat_id": key,
            "conversation_id": conversation_id,
            "locale": reply.locale,
            "rtl": reply.rtl,
            "messages": [m.to_record() for m in messages],
        }
        if route.tapped_message_id is not None:
            payload[TAPPED_MESSAGE_ID] = route.tapped_message_id
        return OutboxMessage(route.topic, key, payload, conversation_id=conversation_id)

    def _reply(self, record: ConversationRecord, turn: Turn) -> Reply:
        locale = record.state.locale
        return Reply(
            conversation_id=record.id,
            locale=locale,
            step=record.state.step,
            messages=[self._render(o, locale) for o in turn.outbound],
            done=record.state.status != "active",
            reference=record.reference,
            rtl=self.catalogs.is_rtl(locale),
            exit=any(isinstance(e, ConversationClosed) and e.reason == "exit" for e in turn.events),
            survey_offer=self._survey_offer(record),
        )

    def _survey_offer(self, record: ConversationRecord) -> SurveyOffer | None:
        if not self._survey_offered(record):
            return None
        locale = record.state.locale
        render = self.catalogs.render
        return SurveyOffer(
            record.id,
            render(SURVEY_OFFER_TEXT, locale),
            render(SURVEY_START_LABEL, locale),
            render(SURVEY_DECLINE_LABEL, locale),
        )

    def _render(self, outbound: Outbound, locale: str) -> RenderedMessage:
        render = self.catalogs.render
        return RenderedMessage(
            render(outbound.text, locale),
            tuple(RenderedChoice(c.id, render(c.label, locale)) for c in outbound.choices),
            outbound.input,
            tuple(
                RenderedLink(self.catalogs.render(link.label, locale), url)
                for link in outbound.links
                if (url := self._links.get(link.key, "")).startswith("https://")
            ),
            summary=tuple(
                RenderedSummaryRow(
                    row.step, render(row.label, locale), render(row.value, locale), row.changeable
                )
                for row in outbound.summary
            ),
            value=outbound.value,
        )

    def _stored_report(self, record: ConversationRecord, event: ReportSubmitted) -> StoredReport:
        report = dict(event.report)
        created_at = self._clock()
        data = {
            "reference": report["reference"],
            "created_at": created_at.isoformat(),
            "channel": record.channel,
            **report,
        }
        return StoredReport(
            reference=report["reference"],
            conversation_id=record.id,
            created_at=created_at,
            channel=record.channel,
            locale=report["locale"],
            priority=report["priority"],
            data=data,
        )
