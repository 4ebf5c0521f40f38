"""The ceiling for a durable turn: a bare aiohttp endpoint doing one insert-and-commit.

    INTAKE_DATABASE_URL=... python -m bench.ceiling_server --port P [--workers N]

POST /ceiling reads a small JSON body, inserts it as one row and commits, then answers JSON.
The database engine comes from `storage.engine.create_engine`, the app's own factory, so it
has the same settings as the app (SQLite: WAL, synchronous=FULL, one writer connection with
BEGIN IMMEDIATE; PostgreSQL: asyncpg pool, READ COMMITTED, no pre-ping). Nothing else: no
middleware, no logging, no validation. The distance from this to the app is the app's cost.
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


def serve(url: str, port: int, reuse_port: bool) -> None:
    web.run_app(
        build(url),
        host="127.0.0.1",
        port=port,
        reuse_port=reuse_port or None,
        access_log=None,
        print=None,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    url = os.environ["INTAKE_DATABASE_URL"]
    asyncio.run(create_table(url))
    if args.workers == 1:
        serve(url, args.port, False)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=serve, args=(url, args.port, True)) for _ in range(args.workers)]
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
