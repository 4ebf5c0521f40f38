"""Run the benchmark suite and print one table: `python -m bench [--only NAME,...] [--quick]`.

Benchmarks: engine (CPU per turn against python-telegram-bot and aiogram), web (durable turns/s
through the web chat API on SQLite and PostgreSQL against an insert-and-commit ceiling, plus
open-loop latency), telegram (webhook turns/s with a fake Bot API), memory (server RSS per open
conversation), scaling (1, 2, 4 workers on PostgreSQL), staff (the inbox's queue at 100,000
reports), layers (a web turn's server CPU by layer: the web channel alone, the service, a unit
of work), commits (the SQLite writer's commits that wait for a checkpoint, with the WAL
checkpointed beside the writer and without). A part whose prerequisites are missing
prints a "skipped: reason" row instead of failing the run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback

from bench.common import Row, log, machine, table

BENCHMARKS: dict[str, str] = {
    "engine": "bench.engine_cost",
    "web": "bench.web_turns",
    "telegram": "bench.telegram_turns",
    "memory": "bench.memory",
    "scaling": "bench.scaling",
    "staff": "bench.staff_queue",
    "search": "bench.report_index",
    "layers": "bench.turn_layers",
    "commits": "bench.sqlite_commits",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument(
        "--quick", action="store_true", help="shorter runs (a smoke test, noisier numbers)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")

    started = time.monotonic()
    context: dict[str, object] = {}  # measurements shared between parts (e.g. the ceiling)
    rows: list[Row] = []
    for name in chosen:
        try:
            module = importlib.import_module(BENCHMARKS[name])
            rows += (
                module.rows(quick=args.quick, context=context)
                if name != "engine"
                else module.rows(args.quick)
            )
        except Exception as error:  # one broken part must not hide the others
            traceback.print_exc()
            rows.append(Row.skipped(name, f"failed: {type(error).__name__}: {error}"[:160]))
    elapsed = time.monotonic() - started

    print(
        f"\nBenchmarks {time.strftime('%Y-%m-%d %H:%M')} on {machine()}"
        f"{' (--quick)' if args.quick else ''}, {elapsed:.0f} s\n"
    )
    print(table(rows))
    notes = [r for r in rows if r.note]
    if notes:
        print()
        for r in notes:
            print(f"- {r.benchmark}: {r.note}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                [
                    r.__dict__
                    if hasattr(r, "__dict__")
                    else {s: getattr(r, s) for s in r.__slots__}
                    for r in rows
                ],
                fh,
                indent=1,
            )
    log(f"done in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
