"""CPU of the storage part of one web turn, in one process, without HTTP.

    .venv/bin/python -m bench.web_storage_turn sqlite|postgres [TURNS]

A unit of work, the locked read (`get_for_turn`), the write (`save_turn`: state, two
transcript lines, the reply kept for the message id) and the commit, one turn after another
on one conversation of a fresh database, as `IntakeService.handle` does them. Prints CPU µs
per turn (`time.process_time`: this process's threads, so aiosqlite's writer thread too, not
PostgreSQL's) and wall ms per turn, as one JSON line. CPU time moves much less with other
load on the machine than turns per second do, so two versions of the code can be compared
on a busy machine by running this for each, interleaved (see BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime

from bench.servers import database
from bot.engine.types import ConversationState
from bot.ports import ConversationRecord, TranscriptEntry
from storage.migrate import upgrade
from storage.sqlalchemy_storage import SqlStorage, create_storage

CONVERSATION = "0b5e0f2c-1d1e-4b59-9d0e-1f4f3c1b2a11"
WARMUP_TURNS = 100
#: A reply of the size of a question with six choices.
REPLY = {
    "conversation_id": CONVERSATION,
    "locale": "en",
    "messages": [
        {
            "text": "What happened? " * 5,
            "choices": [{"id": f"c{i}", "label": f"Choice {i}"} for i in range(6)],
        }
    ],
}


async def _turn(storage: SqlStorage, number: int) -> None:
    message_id = f"m{number}"
    async with storage.unit_of_work() as uow:
        record, _prior = await uow.conversations.get_for_turn(
            CONVERSATION, scope=CONVERSATION, message_id=message_id
        )
        assert record is not None
        record.state = ConversationState(
            step=f"s{number % 7}", answers={"a": "x" * 40, "b": number}
        )
        record.updated_at = datetime.now(UTC)
        seq = record.transcript_seq
        said = {"text": "hello", "kind": "text", "value": "hello"}
        entries = [
            TranscriptEntry(seq, "user", said, record.updated_at),
            TranscriptEntry(seq + 1, "bot", REPLY["messages"][0], record.updated_at),  # type: ignore[index]
        ]
        record.transcript_seq = seq + 2
        await uow.save_turn(record, entries, scope=CONVERSATION, message_id=message_id, reply=REPLY)
        await uow.commit()


async def measure(url: str, turns: int) -> tuple[float, float]:
    """CPU µs and wall ms per turn."""
    await upgrade(url)
    storage = await create_storage(url)
    try:
        now = datetime.now(UTC)
        record = ConversationRecord(
            id=CONVERSATION,
            channel="web",
            state=ConversationState(step="start"),
            created_at=now,
            updated_at=now,
            token_hash="ab" * 32,
        )
        async with storage.unit_of_work() as uow:
            await uow.conversations.add(record)
            await uow.commit()
        for number in range(WARMUP_TURNS):
            await _turn(storage, number)
        cpu, wall = time.process_time(), time.perf_counter()
        for number in range(WARMUP_TURNS, WARMUP_TURNS + turns):
            await _turn(storage, number)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await storage.close()
    return 1e6 * cpu / turns, 1e3 * wall / turns


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    turns = int(sys.argv[2]) if len(sys.argv) > 2 else 800
    with database(kind) as url:
        cpu_us, wall_ms = asyncio.run(measure(url, turns))
    result = {
        "kind": kind,
        "cpu_us_per_turn": round(cpu_us, 1),
        "wall_ms_per_turn": round(wall_ms, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
