"""CPU of the storage part of one web turn, in one process, without HTTP.

    .venv/bin/python -m bench.web_storage_turn sqlite|postgres [TURNS] [MODES]

One turn after another on one conversation of a fresh database, as `IntakeService.handle`
does them: a unit of work, the read, the write (state, two transcript lines, the reply kept for
the message id) and the commit. MODES (comma-separated, default all three), alternated in
rounds of a tenth of TURNS each so that they share the machine's ups and downs:

- `locked`: `get_for_turn` (locked), `save_turn`, `commit()`: the turn as it was before
  `commit_turn`.
- `turn`: `read_for_turn`, `commit_turn`: the turn as the service runs it now (with the
  storage's default `UNLOCKED_TURNS`; on SQLite the write and COMMIT in one hand-off).
- `unlocked`: the same with `unlocked_turns` on (PostgreSQL: the read outside a transaction,
  the write a statement of its own; on SQLite the same as `turn`).

Prints CPU µs per turn (`time.process_time`: this process's threads, so aiosqlite's writer
thread too, not PostgreSQL's) and wall ms per turn for each mode, as one JSON line. CPU time
moves much less with other load on the machine than turns per second do, so two versions of
the code can be compared on a busy machine by running this for each, interleaved (see
BENCHMARKS.md).
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
from storage.sqlalchemy_storage import UNLOCKED_TURNS, SqlStorage, create_storage

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


MODES = ("locked", "turn", "unlocked")


async def _turn(storage: SqlStorage, number: int, mode: str) -> None:
    message_id = f"m{number}"
    storage.unlocked_turns = mode == "unlocked" or (mode == "turn" and UNLOCKED_TURNS)
    async with storage.unit_of_work() as uow:
        read = (
            uow.conversations.get_for_turn if mode == "locked" else uow.conversations.read_for_turn
        )
        record, _prior = await read(CONVERSATION, scope=CONVERSATION, message_id=message_id)
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
        if mode == "locked":
            await uow.save_turn(
                record, entries, scope=CONVERSATION, message_id=message_id, reply=REPLY
            )
            await uow.commit()
        else:
            await uow.commit_turn(
                record, entries, scope=CONVERSATION, message_id=message_id, reply=REPLY
            )


async def measure(url: str, turns: int, modes: list[str]) -> dict[str, tuple[float, float]]:
    """CPU µs and wall ms per turn, by mode."""
    await upgrade(url)
    storage = await create_storage(url)
    spent = {mode: [0.0, 0.0] for mode in modes}
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
        number = 0
        for mode in modes:
            for _ in range(WARMUP_TURNS):
                await _turn(storage, number, mode)
                number += 1
        rounds = 10
        for _round in range(rounds):
            for mode in modes:
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(turns // rounds):
                    await _turn(storage, number, mode)
                    number += 1
                spent[mode][0] += time.process_time() - cpu
                spent[mode][1] += time.perf_counter() - wall
    finally:
        await storage.close()
    done = turns // 10 * 10
    return {mode: (1e6 * cpu / done, 1e3 * wall / done) for mode, (cpu, wall) in spent.items()}


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    turns = int(sys.argv[2]) if len(sys.argv) > 2 else 800
    modes = sys.argv[3].split(",") if len(sys.argv) > 3 else list(MODES)
    if unknown := set(modes) - set(MODES):
        raise SystemExit(f"unknown modes {sorted(unknown)}; choose from {MODES}")
    with database(kind) as url:
        measured = asyncio.run(measure(url, turns, modes))
    result: dict[str, object] = {"kind": kind}
    for mode, (cpu_us, wall_ms) in measured.items():
        result[mode] = {"cpu_us_per_turn": round(cpu_us, 1), "wall_ms_per_turn": round(wall_ms, 2)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
