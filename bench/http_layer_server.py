"""`intake serve` with the intake service answering web turns at once: the web channel's own
cost per request, for `bench.turn_layers`. Never part of the product.

The first `REAL_TURNS` turns run for real, so that the load generator's conversations are
created and one reaches its submission. After that every turn is answered with the last
submitted reply, without the engine or the database; everything around the service (aiohttp,
the middlewares, the token's rate limit, the body's parsing, the reply's JSON, the headers,
the access log line) runs as in the product, and so do the requests that create a
conversation (one in twenty of the load generator's: the script has 19 turns).

`--unit-of-work`: each answered turn also enters and leaves one unit of work with nothing
run in it (a connection checked out of the pool, in line, and given back), which is what a
unit of work costs in a server that is saturated, against what it costs alone.
"""

from __future__ import annotations

import runpy
import sys
from typing import Any

from bot.intake.rendering import Reply
from bot.intake.service import IntakeService

#: Enough for the load generator's warm-up to finish whole conversations with these.
REAL_TURNS = 300


def answer_at_once(*, unit_of_work: bool) -> None:
    real = IntakeService.handle
    seen = {"turns": 0}
    kept: list[Reply] = []

    async def handle(self: IntakeService, *args: Any, **kwargs: Any) -> Reply:
        seen["turns"] += 1
        if not kept or seen["turns"] < REAL_TURNS:
            reply = await real(self, *args, **kwargs)
            if reply.reference:
                kept[:] = [reply]
            return reply
        if unit_of_work:
            async with self.storage.unit_of_work():
                pass
        return kept[0]

    IntakeService.handle = handle  # type: ignore[method-assign]


if __name__ == "__main__":
    with_unit_of_work = "--unit-of-work" in sys.argv
    answer_at_once(unit_of_work=with_unit_of_work)
    sys.argv = ["intake", "serve", *(a for a in sys.argv[1:] if a != "--unit-of-work")]
    runpy.run_module("bot", run_name="__main__")
