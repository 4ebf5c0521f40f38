"""Benchmark 1: CPU per turn of our engine against python-telegram-bot and aiogram 3.

Every side runs the same 19-update conversation (/start + the 18 turns of bench.script),
in-process, no I/O, state kept in memory. Measured with `time.process_time` over many
conversations; the median of several repeats is reported.

- ours, engine: `Engine.handle` (includes deep-copying the state, validators, branching).
- ours, engine + render: plus rendering every outbound text, button label and echo through
  `Catalogs` (what the service sends back), the fair counterpart of a framework handler.
- ours, parse + engine + render: from the Telegram update dict (after `json.loads`, as for
  the frameworks): the Telegram channel's own `read_update` (the webhook's parse), then the
  above.
- PTB (a): `Application.process_update(update)` with a `ConversationHandler` (one state per
  step, CallbackQueryHandler with a pattern and/or MessageHandler), Update objects parsed
  beforehand. (b): `Update.de_json(dict, bot)` + process_update.
- aiogram (a): `Dispatcher.feed_update(bot, update)`, a Router with one handler per FSM
  state (`StateFilter` + `F.data.in_` / `F.text`), `MemoryStorage`; Updates validated
  beforehand. (b): `Dispatcher.feed_raw_update(bot, dict)` (pydantic validation included).
Framework handlers record the answer and set the next state; they send nothing (the Bot's
HTTP layer is stubbed), as our engine sends nothing: only dispatch is compared.

Issue 7's comparison is (b), from the same update JSON. In (a) the frameworks start from
objects already parsed and their handlers only store the answer, while the engine validates,
branches and renders every text: (a) is shown for information, its target is the engine's
own 100 µs.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

from bench.common import Row, fmt, log, ratio, yes_no
from bench.script import SCRIPT, STEP_CHOICES, TEXT_STEPS, TURNS_PER_CONVERSATION

TARGET_US = 100.0


def bench_needs() -> Any:
    """What the service answers when the engine asks (no directory match, a fixed
    reference); the engine does no I/O."""
    from bot.engine.needs import FixedNeeds

    return FixedNeeds(reference="CQC-BENCH-0001")


# ---------------------------------------------------------------------------- ours


class Ours:
    def __init__(self) -> None:
        from telegram import Bot

        from bench.updates import BOT_TOKEN
        from bot.channels.telegram.updates import read_update
        from bot.engine.engine import Engine
        from bot.engine.types import Inbound
        from bot.i18n import Catalogs
        from dialogs.intake import INTAKE
        from dialogs.languages import LANGUAGES

        self.catalogs = Catalogs(globals_={"contact_phone": "03000 616161"})
        offered = [(c, n) for c, n in LANGUAGES if self.catalogs.supports(c)]
        self.engine = Engine(INTAKE, offered)
        self.translate = self.catalogs.translator("en")
        self.inbounds = [Inbound(s.kind, s.value) for s in SCRIPT]
        self.needs = bench_needs()
        self.read_update = read_update
        #: Only for updates `read_update` hands to python-telegram-bot (none in the script).
        self.bot = Bot(BOT_TOKEN)

    def render(self, turn: Any) -> None:
        render, locale = self.catalogs.render, turn.state.locale
        for out in turn.outbound:
            render(out.text, locale)
            for choice in out.choices:
                render(choice.label, locale)
        if turn.echo is not None:
            render(turn.echo, locale)

    def conversation(self, render: bool) -> None:
        engine, translate = self.engine, self.translate
        turn = engine.start("en")
        if render:
            self.render(turn)
        for inbound in self.inbounds:
            turn = engine.handle(turn.state, inbound, translate, self.needs)
            if render:
                self.render(turn)
        assert turn.state.status == "submitted", turn.state

    def parse(self, update: dict[str, Any]) -> tuple[int, str | None, Any]:
        """Telegram update dict -> (chat id, locale hint, Inbound): the webhook's own parse."""
        _update_id, action = self.read_update(update, self.bot)
        return action.chat_id, action.language_code, action.inbound

    def conversation_from_updates(self, updates: list[dict[str, Any]]) -> None:
        engine, translate, store, parse = self.engine, self.translate, {}, self.parse
        for update, _step in zip(updates, (None, *SCRIPT), strict=True):
            chat, hint, inbound = parse(update)
            if inbound.kind == "start":
                turn = engine.start(hint or "en")
            else:
                turn = engine.handle(store[chat], inbound, translate, self.needs)
            store[chat] = turn.state
            self.render(turn)
        assert turn.state.status == "submitted"


# ---------------------------------------------------------------------------- python-telegram-bot


def build_ptb() -> Any:
    from telegram import Update
    from telegram.ext import (
        ApplicationBuilder,
        CallbackQueryHandler,
        CommandHandler,
        ConversationHandler,
        MessageHandler,
        filters,
    )
    from telegram.request import BaseRequest

    from bench.updates import BOT_ID, BOT_TOKEN

    class StubRequest(BaseRequest):
        """No network: getMe answers locally; nothing else is called by the handlers."""

        async def initialize(self) -> None: ...

        async def shutdown(self) -> None: ...

        @property
        def read_timeout(self) -> float:
            return 1.0

        async def do_request(
            self, url: str, method: str, request_data: Any = None, **_: Any
        ) -> tuple[int, bytes]:
            return 200, (
                b'{"ok":true,"result":{"id":%d,"is_bot":true,"first_name":"Care feedback",'
                b'"username":"care_feedback_bot"}}' % BOT_ID
            )

    steps = [s.step for s in SCRIPT]

    def handler(step: str, nxt: object) -> Callable[..., Any]:
        async def record(update: Update, context: Any) -> object:
            query = update.callback_query
            context.user_data[step] = query.data if query else update.message.text  # type: ignore[union-attr]
            return nxt

        return record

    async def start(update: Update, context: Any) -> str:
        context.user_data.clear()
        return steps[0]

    states: dict[object, list[Any]] = {}
    for i, step in enumerate(steps):
        nxt = steps[i + 1] if i + 1 < len(steps) else ConversationHandler.END
        callback = handler(step, nxt)
        handlers: list[Any] = []
        if STEP_CHOICES[step]:
            handlers.append(
                CallbackQueryHandler(callback, pattern=f"^({'|'.join(STEP_CHOICES[step])})$")
            )
        if step in TEXT_STEPS:
            handlers.append(MessageHandler(filters.TEXT & ~filters.COMMAND, callback))
        states[step] = handlers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # per_message=False with CallbackQueryHandler: intended
        conversation = ConversationHandler(
            entry_points=[CommandHandler("start", start)],
            states=states,
            fallbacks=[CommandHandler("cancel", start)],
        )
    app = (
        ApplicationBuilder()
        .token(BOT_TOKEN)
        .request(StubRequest())
        .get_updates_request(StubRequest())
        .updater(None)
        .build()
    )
    app.add_handler(conversation)
    return app, Update


# ---------------------------------------------------------------------------- aiogram 3


def build_aiogram() -> Any:
    from aiogram import Bot, Dispatcher, F, Router
    from aiogram.filters import CommandStart, StateFilter
    from aiogram.fsm.context import FSMContext
    from aiogram.fsm.storage.memory import MemoryStorage
    from aiogram.types import CallbackQuery, Message, Update

    from bench.updates import BOT_TOKEN

    router = Router()
    steps = [s.step for s in SCRIPT]

    @router.message(CommandStart())
    async def start(message: Message, state: FSMContext) -> None:
        await state.set_data({})
        await state.set_state(f"intake:{steps[0]}")

    def register(step: str, nxt: str | None) -> None:
        async def on_button(query: CallbackQuery, state: FSMContext) -> None:
            await state.update_data({step: query.data})
            await (state.set_state(nxt) if nxt else state.clear())

        async def on_text(message: Message, state: FSMContext) -> None:
            await state.update_data({step: message.text})
            await (state.set_state(nxt) if nxt else state.clear())

        if STEP_CHOICES[step]:
            router.callback_query(
                StateFilter(f"intake:{step}"), F.data.in_(set(STEP_CHOICES[step]))
            )(on_button)
        if step in TEXT_STEPS:
            router.message(StateFilter(f"intake:{step}"), F.text)(on_text)

    for i, step in enumerate(steps):
        register(step, f"intake:{steps[i + 1]}" if i + 1 < len(steps) else None)

    dp = Dispatcher(storage=MemoryStorage())
    dp.include_router(router)
    bot = Bot(token=BOT_TOKEN)
    return dp, bot, Update


# ---------------------------------------------------------------------------- measurement


def _per_turn_us(run: Callable[[], None], conversations: int) -> float:
    gc.collect()
    started = time.process_time()
    run()
    return (time.process_time() - started) / (conversations * TURNS_PER_CONVERSATION) * 1e6


def measure(quick: bool = False) -> dict[str, float | str]:
    from bench.updates import conversation_updates, prompts

    conversations = 30 if quick else 60
    repeats = 3 if quick else 5
    ours = Ours()
    shown = prompts()
    # One set of conversations, replayed in every repeat: each ends (submit), so the same
    # chat ids start afresh; neither framework deduplicates update ids.
    update_sets = [[conversation_updates(900_000 + i, shown) for i in range(conversations)]] * (
        repeats + 1
    )
    results: dict[str, float | str] = {}
    variants: dict[str, Callable[[int], Callable[[], None]]] = {}

    def ours_engine(r: int) -> Callable[[], None]:
        return lambda: [ours.conversation(False) for _ in range(conversations)] and None

    def ours_render(r: int) -> Callable[[], None]:
        return lambda: [ours.conversation(True) for _ in range(conversations)] and None

    def ours_parse(r: int) -> Callable[[], None]:
        return lambda: [ours.conversation_from_updates(u) for u in update_sets[r]] and None

    variants.update(
        {"ours_engine": ours_engine, "ours_render": ours_render, "ours_parse": ours_parse}
    )

    loop = asyncio.new_event_loop()
    try:
        try:
            app, PtbUpdate = build_ptb()
            loop.run_until_complete(app.initialize())
            parsed = [[PtbUpdate.de_json(u, app.bot) for u in conv] for conv in update_sets[0]]
            ptb_parsed = [parsed] * len(update_sets)

            async def ptb_dispatch(convs: list[list[Any]]) -> None:
                for conv in convs:
                    for update in conv:
                        await app.process_update(update)
                assert not app.handlers[0][0]._conversations, "PTB conversations did not end"

            async def ptb_full(convs: list[list[dict[str, Any]]]) -> None:
                bot = app.bot
                for conv in convs:
                    for data in conv:
                        await app.process_update(PtbUpdate.de_json(data, bot))

            variants["ptb_dispatch"] = lambda r: (
                lambda: loop.run_until_complete(ptb_dispatch(ptb_parsed[r]))
            )
            variants["ptb_full"] = lambda r: (
                lambda: loop.run_until_complete(ptb_full(update_sets[r]))
            )
        except ImportError as error:
            results["ptb_skip"] = f"python-telegram-bot not installed ({error.name})"

        try:
            dp, abot, AioUpdate = build_aiogram()
            validated = [
                [AioUpdate.model_validate(u, context={"bot": abot}) for u in conv]
                for conv in update_sets[0]
            ]
            aio_parsed = [validated] * len(update_sets)

            async def aio_dispatch(convs: list[list[Any]]) -> None:
                for conv in convs:
                    for update in conv:
                        await dp.feed_update(abot, update)

            async def aio_full(convs: list[list[dict[str, Any]]]) -> None:
                for conv in convs:
                    for data in conv:
                        await dp.feed_raw_update(abot, data)

            variants["aiogram_dispatch"] = lambda r: (
                lambda: loop.run_until_complete(aio_dispatch(aio_parsed[r]))
            )
            variants["aiogram_full"] = lambda r: (
                lambda: loop.run_until_complete(aio_full(update_sets[r]))
            )
        except ImportError as error:
            results["aiogram_skip"] = "aiogram 3 not installed (pip install 'aiogram>=3.4,<4')"
            log(f"aiogram unavailable: {error}")

        # Interleave the variants in every repeat so that noise on this shared machine hits
        # all of them alike; repeat 0 is a warm-up and is discarded.
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for r in range(repeats + 1):
            for name, make in variants.items():
                value = _per_turn_us(make(r), conversations)
                if r:
                    samples[name].append(value)
        for name, values in samples.items():
            results[name] = statistics.median(values)
            results[name + "_spread"] = f"{min(values):.1f}-{max(values):.1f}"
        if "aiogram_dispatch" in variants:
            loop.run_until_complete(abot.session.close())
        if "ptb_dispatch" in variants:
            loop.run_until_complete(app.shutdown())
    finally:
        loop.close()
    results["conversations"] = conversations
    results["repeats"] = repeats
    return results


def rows(quick: bool = False) -> list[Row]:
    log("engine: measuring CPU per turn (ours, python-telegram-bot, aiogram)")
    r = measure(quick)
    us = " µs"
    engine, render, parse = float(r["ours_engine"]), float(r["ours_render"]), float(r["ours_parse"])
    out = [
        Row(
            "engine: CPU/turn, engine.handle only",
            fmt(engine, us),
            "",
            "",
            "≤ 100 µs",
            yes_no(engine <= TARGET_US),
        )
    ]
    for name, label in (("ptb", "python-telegram-bot"), ("aiogram", "aiogram 3")):
        if f"{name}_skip" in r:
            out.append(Row.skipped(f"engine vs {label}", str(r[f"{name}_skip"])))
            continue
        dispatch, full = float(r[f"{name}_dispatch"]), float(r[f"{name}_full"])
        row = Row(
            f"engine+render vs {label} dispatch (a)",
            fmt(render, us),
            fmt(dispatch, us),
            ratio(render, dispatch),
            "≤ 100 µs",
            yes_no(render <= TARGET_US),
        )
        row.note = (
            f"information: {label}'s updates parsed beforehand and its handlers only store "
            "the answer, while the engine validates, branches and renders every text"
        )
        out.append(row)
        out.append(
            Row(
                f"our parse (read_update)+engine+render vs {label} parse+dispatch (b)",
                fmt(parse, us),
                fmt(full, us),
                ratio(parse, full),
                "< baseline",
                yes_no(parse < full),
            )
        )
    spreads = ", ".join(f"{k[:-7]} {v}" for k, v in r.items() if k.endswith("_spread"))
    out[0].note = (
        f"CPU µs per turn (process_time), median of {r['repeats']} repeats x "
        f"{r['conversations']} conversations x {TURNS_PER_CONVERSATION} turns; "
        f"range min-max: {spreads}"
    )
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(measure("--quick" in sys.argv), indent=1))
