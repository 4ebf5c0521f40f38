"""`intake` — serve, chat in the terminal, migrate, import the directory, read reports."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.config import ConfigError, Settings
from bot.logging_setup import configure_logging

log = logging.getLogger("intake")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging()
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(settings, args) or 0)
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="intake", description=__doc__)
    sub = parser.add_subparsers(title="commands")

    serve = sub.add_parser("serve", help="serve the web chat API, widget and Telegram webhook")
    serve.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("INTAKE_WORKERS", "1")),
        help="worker processes sharing the port (needs PostgreSQL for more than 1)",
    )
    serve.set_defaults(handler=_serve)

    chat = sub.add_parser("chat", help="hold the intake conversation in this terminal")
    chat.add_argument("--locale", default=None, help="language code, e.g. cy or pl")
    chat.set_defaults(handler=lambda s, a: asyncio.run(_chat(s, a)))

    db = sub.add_parser("db", help="database schema").add_subparsers(title="db commands")
    upgrade = db.add_parser("upgrade", help="apply migrations (safe to repeat)")
    upgrade.set_defaults(handler=lambda s, a: asyncio.run(_db_upgrade(s)))

    directory = sub.add_parser("directory", help="the provider directory").add_subparsers(
        title="directory commands"
    )
    imp = directory.add_parser("import", help="import the regulator's monthly directory CSV")
    imp.add_argument("file", type=Path)
    imp.set_defaults(handler=lambda s, a: asyncio.run(_directory_import(s, a.file)))

    conversations = sub.add_parser(
        "conversations", help="conversations in progress"
    ).add_subparsers(title="conversations commands")
    purge = conversations.add_parser(
        "purge",
        help="end conversations idle for N days and erase what was typed in them; erase "
        "replies kept for retries once the retry window has passed (run it daily)",
    )
    purge.add_argument("--idle-days", type=int, default=30, help="at least 7 (default 30)")
    purge.set_defaults(handler=lambda s, a: asyncio.run(_conversations_purge(s, a.idle_days)))

    reports = sub.add_parser("reports", help="stored reports").add_subparsers(
        title="reports commands"
    )
    lst = reports.add_parser("list", help="the queue: most urgent first, then oldest")
    lst.add_argument("--limit", type=int, default=50)
    lst.set_defaults(handler=lambda s, a: asyncio.run(_reports_list(s, a.limit)))
    show = reports.add_parser("show", help="one report in full")
    show.add_argument("reference")
    show.set_defaults(handler=lambda s, a: asyncio.run(_reports_show(s, a.reference)))
    export = reports.add_parser("export", help="every report, for analysis")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument(
        "--output", "-o", type=Path, default=None, help="file (default: standard output)"
    )
    export.set_defaults(handler=lambda s, a: asyncio.run(_reports_export(s, a.format, a.output)))

    from bot.staff.cli import add_commands as add_staff_commands
    from bot.staff.retention import add_commands as add_retention_commands

    add_retention_commands(reports)
    add_staff_commands(sub)

    from bot.outbox.cli import add_commands as add_delivery_commands

    add_delivery_commands(sub, reports)

    from bot.intake.survey_cli import add_commands as add_survey_commands

    add_survey_commands(sub)
    return parser


# ---------------------------------------------------------------------- serve


#: A worker that dies is restarted, unless workers keep dying: more than this many deaths
#: within CRASH_WINDOW_SECONDS means something is wrong with every worker (a bad setting, the
#: port taken), so the parent stops them all and exits non-zero for its supervisor to see.
MAX_RESTARTS = 5
CRASH_WINDOW_SECONDS = 60.0
#: How long stopping workers get to finish their requests (SIGTERM) before SIGKILL.
STOP_TIMEOUT_SECONDS = 30.0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    """One process, or a parent supervising `--workers N` processes sharing one port.

    The parent holds no database connection and serves nothing: it migrates once, starts the
    workers (each binds the port with SO_REUSEPORT, so the kernel spreads connections), and
    then only supervises. A worker that dies (crash, OOM kill) is logged and restarted; a
    crash loop stops everything with exit status 1. SIGTERM or SIGINT stops the workers
    gracefully (in-flight turns finish; nothing is acknowledged before commit) and exits 0.
    """
    workers = max(1, args.workers)
    if workers > 1 and settings.telegram_token and settings.telegram_mode == "polling":
        print(
            "Telegram polling needs a single worker (several would fight over getUpdates); "
            "use INTAKE_TELEGRAM_MODE=webhook with several workers",
            file=sys.stderr,
        )
        return 2
    if workers > 1 and settings.database_url.startswith("sqlite"):
        print(
            "several workers need PostgreSQL (INTAKE_DATABASE_URL=postgresql+asyncpg://...)",
            file=sys.stderr,
        )
        return 2
    pool_size = _serving_pool_size(settings, workers)
    if pool_size is None:
        return 2
    asyncio.run(_db_upgrade(settings, quiet=True))
    if workers == 1:
        _run_worker(settings, reuse_port=False, pool_size=pool_size)
        return 0
    return _supervise(settings, workers, pool_size)


def _serving_pool_size(settings: Settings, workers: int) -> int | None:
    """Each worker's share of INTAKE_DATABASE_CONNECTIONS for its turns, or `POOL_SIZE` when
    it is not set (PostgreSQL; SQLite has its one connection whatever is asked); None, said on
    stderr, if the share is too small."""
    from storage.engine import POOL_SIZE
    from storage.sqlalchemy_storage import serving_pool_size

    if settings.database_url.startswith("sqlite") or settings.database_connections is None:
        return POOL_SIZE
    try:
        return serving_pool_size(settings.database_connections, workers)
    except ValueError as error:
        print(f"INTAKE_DATABASE_CONNECTIONS: {error}", file=sys.stderr)
        return None


def _supervise(settings: Settings, workers: int, pool_size: int) -> int:
    import time
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("spawn")
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            log.info("received %s; stopping %d workers", signal.Signals(signum).name, workers)
        stopping = True

    # Installed before the first worker starts, so an early SIGTERM is not lost; a spawned
    # worker starts with default handlers and aiohttp installs its own graceful ones.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start(slot: int) -> multiprocessing.process.BaseProcess:
        child = ctx.Process(
            target=_run_worker, args=(settings, True, pool_size), name=f"intake-worker-{slot}"
        )
        child.start()
        log.info("worker %d started (pid %s)", slot, child.pid)
        return child

    metrics_dir = _metrics_directory()
    children = {slot: start(slot) for slot in range(workers)}
    deaths: list[float] = []
    status = 0
    while not stopping:
        ready = wait([c.sentinel for c in children.values()], timeout=0.5)
        if not ready or stopping:
            continue
        for slot, child in list(children.items()):
            if child.is_alive():
                continue
            child.join()
            log.error("worker %d (pid %s) exited with status %s", slot, child.pid, child.exitcode)
            now = time.monotonic()
            deaths = [t for t in deaths if now - t < CRASH_WINDOW_SECONDS] + [now]
            if len(deaths) > MAX_RESTARTS:
                log.critical(
                    "%d workers died within %.0f s; stopping (see the errors above)",
                    len(deaths),
                    CRASH_WINDOW_SECONDS,
                )
                stopping, status = True, 1
                break
            children[slot] = start(slot)
    _stop_workers(list(children.values()))
    log.info("all workers stopped")
    if metrics_dir is not None:
        import shutil

        shutil.rmtree(metrics_dir, ignore_errors=True)
    return status


def _metrics_directory() -> str | None:
    """Workers write their /metrics counters to files in one directory, so any worker's
    /metrics adds up all of them (prometheus-client's multiprocess mode). Set before the
    workers are spawned: they read it when they import prometheus_client. An operator's own
    PROMETHEUS_MULTIPROC_DIR is used (and kept) as it is."""
    import tempfile

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    directory = tempfile.mkdtemp(prefix="intake-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory


def _stop_workers(children: list[multiprocessing.process.BaseProcess]) -> None:
    """SIGTERM (aiohttp's graceful shutdown), then SIGKILL for any that outlive the timeout."""
    import time

    for child in children:
        if child.is_alive():
            child.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            log.warning(
                "worker pid %s did not stop in %.0f s; killing it", child.pid, STOP_TIMEOUT_SECONDS
            )
            child.kill()
            child.join()


def _run_worker(settings: Settings, reuse_port: bool, pool_size: int) -> None:
    """One serving process, with `pool_size` PostgreSQL connections for its turns
    (`_serving_pool_size`). aiohttp handles SIGINT/SIGTERM: stop accepting, let in-flight
    requests finish, then run the app's cleanup (which disposes the database pool)."""
    from aiohttp import web

    from bot.app import build_app
    from bot.channels.web.api import SERVER_OPTIONS

    configure_logging()
    print(f"Serving on http://{settings.host}:{settings.port} (pid {os.getpid()})", flush=True)
    # One of several workers sharing the port sees a conversation's turns at random: what it
    # kept of one would mostly be stale (storage.turn_cache).
    app = build_app(
        settings,
        migrate=False,
        keep_turns=settings.keep_turns and not reuse_port,
        pool_size=pool_size,
    )
    app.on_startup.append(settle_garbage_collector)  # last: after the service is built
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        reuse_port=reuse_port or None,
        access_log=None,
        print=None,
        shutdown_timeout=STOP_TIMEOUT_SECONDS - 5,
        loop=serving_loop(),
        **SERVER_OPTIONS,
    )


def serving_loop() -> asyncio.AbstractEventLoop:
    """A serving worker's event loop: uvloop's (libuv), the field's standard faster loop for
    aiohttp servers, where it is installed (a dependency everywhere but Windows). On the web
    turn it took about a tenth off the worker's CPU per turn, and the raw ceiling's CPU per
    request did not move (BENCHMARKS.md). The bench's ceiling server runs on the same loop, so
    the ratio compares the two on equal terms."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


#: Container objects allocated (net) before a young collection; Python's default is 700.
GC_YOUNG_THRESHOLD = 10_000


async def settle_garbage_collector(_app: object) -> None:
    """A serving worker's cyclic garbage collector, set once everything long-lived exists.

    Measured on the web turn (BENCHMARKS.md): with Python's defaults the collector took about
    40 µs of each turn's CPU on PostgreSQL. The 50 turns in flight alone pass the default
    700 objects, so young collections ran every few turns and moved live requests' objects
    into the old generations, and every few seconds a full collection walked all of the
    process's ~150,000 objects (the libraries, the dialogue, the catalogs, the directory) for
    about 80 ms, stalling every turn in flight. Frozen (`gc.freeze`, the documented way),
    those objects are left out of every collection; the larger young threshold lets the
    objects of turns in flight die by reference counting before a collection sees them. Garbage
    with reference cycles is still collected, a little later."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD)


# ---------------------------------------------------------------------- database and directory


async def _db_upgrade(settings: Settings, *, quiet: bool = False) -> int:
    from storage.migrate import upgrade

    await upgrade(settings.database_url)
    if not quiet:
        print("database is up to date")
    return 0


async def _directory_import(settings: Settings, path: Path) -> int:
    from bot.directory import DirectoryFormatError, parse_directory_csv
    from storage.migrate import upgrade
    from storage.sqlalchemy_storage import create_storage

    if not await asyncio.to_thread(path.exists):
        print(f"no such file: {path}", file=sys.stderr)
        return 2
    try:
        parsed = await asyncio.to_thread(parse_directory_csv, path)
    except DirectoryFormatError as exc:
        print(f"{path} is not a directory file: {exc}", file=sys.stderr)
        return 2
    await upgrade(settings.database_url)
    storage = await create_storage(settings.database_url, timeouts=None)
    try:
        result = await storage.directory.replace_all(
            parsed.locations, produced_on=parsed.produced_on
        )
        alerts = await _queue_inspection_alerts(storage)
    finally:
        await storage.close()
    print(
        f"imported {result.total} locations ({result.added} new, {result.updated} updated, "
        f"{result.removed} removed); {len(parsed.skipped)} rows skipped"
    )
    if alerts:
        print(f"{alerts} inspection-report alerts queued for newer inspections")
    for problem in parsed.skipped[:20]:
        print(f"  skipped line {problem.line}: {problem.reason}")
    return 0


async def _queue_inspection_alerts(storage) -> int:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from bot.outbox.routes import queue_inspection_alerts

    return await queue_inspection_alerts(storage, datetime.now(UTC))


# ---------------------------------------------------------------------- conversations

#: People are promised they can come back to a conversation for at least a week.
MIN_IDLE_DAYS = 7


async def _conversations_purge(settings: Settings, idle_days: int) -> int:
    from datetime import timedelta

    from bot.app import build_service

    if idle_days < MIN_IDLE_DAYS:
        print(
            f"--idle-days must be at least {MIN_IDLE_DAYS}: people may come back within a week",
            file=sys.stderr,
        )
        return 2
    if settings.reply_retention_hours < 1:
        print("INTAKE_REPLY_RETENTION_HOURS must be at least 1", file=sys.stderr)
        return 2
    service = await build_service(settings)
    try:
        ended = await service.purge_idle(timedelta(days=idle_days))
        erased = await service.purge_kept_replies(timedelta(hours=settings.reply_retention_hours))
        forgotten = await service.purge_chat_messages()
        unswept = await service.mark_unswept()
    finally:
        await service.storage.close()
    print(
        f"ended {ended} conversations idle for more than {idle_days} days; what was typed in them is erased"
    )
    print(
        f"erased {erased} replies and sent messages older than "
        f"{settings.reply_retention_hours} hours (kept only for retries)"
    )
    print(f"forgot {forgotten} chat message ids older than 48 hours (kept only for exit)")
    if unswept:
        print(f"{unswept} finished conversations left unmarked by an older release: marked")
    return 0


# ---------------------------------------------------------------------- reports


async def _open_storage(settings: Settings):  # type: ignore[no-untyped-def]
    from storage.migrate import upgrade
    from storage.sqlalchemy_storage import create_storage

    await upgrade(settings.database_url)
    return await create_storage(settings.database_url, timeouts=None)


def _formatter(settings: Settings):  # type: ignore[no-untyped-def]
    from bot.app import build_catalogs
    from bot.intake.reports import ReportFormatter
    from dialogs.intake import INTAKE

    return ReportFormatter(INTAKE, build_catalogs(settings))


async def _reports_list(settings: Settings, limit: int) -> int:
    storage = await _open_storage(settings)
    try:
        async with storage.unit_of_work() as uow:
            reports = await uow.reports.list(limit=limit)
            total = await uow.reports.count()
    finally:
        await storage.close()
    print(
        f"{'REFERENCE':<10} {'RECEIVED (UTC)':<17} {'PRIORITY':<13} {'CHANNEL':<9} {'SERVICE TYPE':<14} SERVICE"
    )
    for r in reports:
        service = r.data.get("provider_name") or r.data.get("provider_text") or ""
        print(
            f"{r.reference:<10} {r.created_at:%Y-%m-%d %H:%M} {r.priority:<13} {r.channel:<9} "
            f"{r.data.get('service_type') or '':<14} {_one_line(service, 40)}"
        )
    print(f"{len(reports)} of {total} reports")
    return 0


async def _reports_show(settings: Settings, reference: str) -> int:
    from bot.intake.reference import normalise_reference
    from bot.outbox.cli import delivery_state

    storage = await _open_storage(settings)
    try:
        async with storage.unit_of_work() as uow:
            report = await uow.reports.get(normalise_reference(reference))
        delivery = await delivery_state(storage, report.reference) if report else {}
    finally:
        await storage.close()
    if report is None:
        print(f"no report with reference {reference}", file=sys.stderr)
        return 1
    shown = {**_formatter(settings).record(report), **delivery}
    print(json.dumps(shown, ensure_ascii=False, indent=2))
    return 0


async def _reports_export(settings: Settings, fmt: str, output: Path | None) -> int:
    storage = await _open_storage(settings)
    formatter = _formatter(settings)
    out = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    try:
        offset, page = 0, 500
        first = True
        while True:
            async with storage.unit_of_work() as uow:
                batch = await uow.reports.list(limit=page, offset=offset)
            if not batch:
                break
            chunks = formatter.jsonl(batch) if fmt == "jsonl" else formatter.csv(batch)
            for i, chunk in enumerate(chunks):
                if fmt == "csv" and i == 0 and not first:
                    chunk = chunk.split("\r\n", 1)[1] if "\r\n" in chunk else ""  # header once
                out.write(chunk)
            first = False
            offset += page
        if fmt == "csv" and first:
            out.write("".join(formatter.csv([])))
    finally:
        await storage.close()
        if output:
            out.close()
    return 0


def _one_line(text: str, width: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# ---------------------------------------------------------------------- terminal chat


async def _chat(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import build_service
    from bot.channels.terminal import converse

    service = await build_service(settings)
    try:
        return await converse(service, locale_hints=(args.locale, os.environ.get("LANG")))
    finally:
        await service.storage.close()
