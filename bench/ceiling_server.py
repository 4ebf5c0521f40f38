"""The ceiling for a durable turn: a bare aiohttp endpoint doing one insert-and-commit.

    INTAKE_DATABASE_URL=... python -m bench.ceiling_server --port P [--workers N] [--driver D]

POST /ceiling reads a small JSON body, inserts it as one row and commits, then answers JSON.
Nothing else: no middleware, no logging, no validation. The distance from this to the app is
the app's cost.

`--driver raw` (the physical ceiling) talks to the database through the bare driver:
asyncpg's pool with one prepared INSERT in an explicit transaction, or one aiosqlite
connection with the product's pragmas (WAL, synchronous=FULL, BEGIN IMMEDIATE), writes
serialised as the product's single writer is. `--driver sqlalchemy` uses the app's own
engine factory (`storage.engine.create_engine`), so it shows what SQLAlchemy's async layer
costs on the same statement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Text, insert

metadata = MetaData()
rows = Table(
    "bench_ceiling",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("payload", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
ENGINE = web.AppKey("engine", object)
INSERT_ROW = web.AppKey("insert_row", object)
RAW_SQL = "INSERT INTO bench_ceiling (payload, created_at) VALUES ({0}, {1})"


async def create_table(url: str) -> None:
    from storage.engine import create_engine

    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    await engine.dispose()


def build(url: str) -> web.Application:
    from storage.engine import create_engine

    app = web.Application()

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        app[ENGINE] = create_engine(url)
        yield
        await app[ENGINE].dispose()  # type: ignore[attr-defined]

    async def ceiling(request: web.Request) -> web.Response:
        body = await request.json()
        async with request.app[ENGINE].begin() as conn:  # type: ignore[attr-defined]
            await conn.execute(
                insert(rows).values(payload=json.dumps(body), created_at=datetime.now(UTC))
            )
        return web.json_response({"ok": True})

    app.cleanup_ctx.append(lifetime)
    app.router.add_post("/ceiling", ceiling)
    return app


def build_raw(url: str) -> web.Application:
    """The same endpoint on the bare driver: the physical limit of one durable insert."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    app = web.Application()

    async def postgres(app: web.Application) -> AsyncIterator[None]:
        import asyncpg

        dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=10)
        sql = RAW_SQL.format("$1", "$2")

        async def insert_row(payload: str) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(sql, payload, datetime.now(UTC))

        app[INSERT_ROW] = insert_row
        yield
        await pool.close()

    async def sqlite(app: web.Application) -> AsyncIterator[None]:
        import aiosqlite

        conn = await aiosqlite.connect(parsed.database or "", isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=5000"):
            await conn.execute(f"PRAGMA {pragma}")
        writer = asyncio.Lock()  # one writer, as in the product
        sql = RAW_SQL.format("?", "?")

        async def insert_row(payload: str) -> None:
            async with writer:
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    await conn.execute(sql, (payload, datetime.now(UTC).isoformat()))
                except BaseException:
                    await conn.execute("ROLLBACK")
                    raise
                await conn.execute("COMMIT")

        app[INSERT_ROW] = insert_row
        yield
        await conn.close()

    async def ceiling(request: web.Request) -> web.Response:
        body = await request.json()
        await request.app[INSERT_ROW](json.dumps(body))  # type: ignore[operator]
        return web.json_response({"ok": True})

    app.cleanup_ctx.append(sqlite if parsed.get_backend_name() == "sqlite" else postgres)
    app.router.add_post("/ceiling", ceiling)
    return app


def serve(url: str, port: int, reuse_port: bool, driver: str = "sqlalchemy") -> None:
    from bot.cli import serving_loop

    # The product's serving loop (uvloop), so that the ratio compares like with like.
    web.run_app(
        build_raw(url) if driver == "raw" else build(url),
        host="127.0.0.1",
        port=port,
        reuse_port=reuse_port or None,
        access_log=None,
        print=None,
        loop=serving_loop(),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--driver", choices=("raw", "sqlalchemy"), default="raw")
    args = parser.parse_args()
    url = os.environ["INTAKE_DATABASE_URL"]
    asyncio.run(create_table(url))
    if args.workers == 1:
        serve(url, args.port, False, args.driver)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ctx = multiprocessing.get_context("spawn")
    children = [
        ctx.Process(target=serve, args=(url, args.port, True, args.driver))
        for _ in range(args.workers)
    ]
    for child in children:
        child.start()
    try:
        for child in children:
            child.join()
    finally:
        for child in children:
            child.terminate()


if __name__ == "__main__":
    main()
