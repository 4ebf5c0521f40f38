"""Benchmark 3: Telegram webhook turns per second, with a fake Bot API in its own process.

The app runs with the Telegram channel in webhook mode, pointed at `bench.fake_telegram`
(INTAKE_TELEGRAM_API_BASE_URL). The load generator posts the benchmark conversation as
Telegram updates (/start, then messages and callback queries) for 50 chats at once, each
chat in order, as Telegram does. A 200 means the turn is committed; replies reach the fake
API afterwards (their cost is included in the server's CPU). Baseline: the same ceiling as
the web benchmark (insert-and-commit per request, same database kind, same concurrency);
it is measured here if the web benchmark did not run first.

Then, against Telegram's own limit (about 30 messages a second per bot, one a second per
chat), with `bench.fake_telegram --drive` posting updates and timing replies on one clock:
- the webhook's own work: one update at a time, receipt to the 200 after commit, against a web
  turn (target ≤ 1.5x): a web conversation and a Telegram chat taking turns on one server, one
  request in flight (`bench.loadgen`'s `interleaved`), each pair on a fresh server
  (`pair_servers`) warmed by a web run alone, which the note also compares with
  (`one_at_a_time_pairs`);
- replies at 15 updates/s (half the send limit) over 50 chats, each chat answering only after
  its reply arrived: the time from the webhook's 200 (right after the commit) to the reply
  reaching the Bot API (target p99 ≤ 50 ms: under the limit a reply goes at once);
- a burst above the limit (60 chats x 3 updates at once): how long the 180 replies take to
  drain against the ideal at 30/s, and each chat's lag, from an update's 200 to its reply,
  against a fair queue at the limit fed the same 200s (`fair_queue`). Fair: no chat waits
  more than a second (Telegram's per-chat interval) longer than it would there. Comparing
  every chat's first reply with every chat's last instead fails even for that fair queue:
  the updates are accepted over a second or more, some chats' third before others' first;
- open loop at 50% of the saturated webhook rate (target p99 ≤ 50 ms).
The send pacer's own CPU per grant, with the outbox's 256 replies in hand against 16, is a
row of its own (`bench.pacer_cost`).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from bench import wal
from bench.common import PYTHON, ROOT, Row, alternated_pairs, fmt, log, median_by, ratio, yes_no
from bench.disk import PROBE_NOTE, disk_note, probed, verdict
from bench.loadgen import SECRET
from bench.pacer_cost import row as pacer_row
from bench.servers import (
    app_server,
    ceiling_server,
    database,
    load,
    postgres_available,
)
from bench.speed import SPEED_NOTE, slower_by, speed_note
from bench.steal import BUSY_NOTE, STEAL_NOTE, share_note
from bench.web_turns import TARGET_PAIRS, carried_note, cpu_ms, database_note, settled, timing
from bench.write_batches import note as batch_note

CONCURRENCY = 50
SEND_LIMIT = 30.0
PACED_RATE = SEND_LIMIT / 2
PACED_CHATS = 50
BURST_CHATS = 60
BURST_PER_CHAT = 3
PER_CHAT_RATE = 1.0
PER_CHAT_BURST = 3.0
#: How much longer than in the fair queue a chat may wait: one per-chat interval.
FAIR_SLACK_S = 1.0
#: The open loop's server is fresh: warmed this much longer than the others (`run_backend`).
OPEN_LOOP_EXTRA_WARMUP_S = 2.0


@contextlib.contextmanager
def _fake_telegram(*args: str) -> Iterator[list[str]]:
    """The fake Bot API in its own process; yields the words of the line it prints first."""
    proc = subprocess.Popen(
        [PYTHON, "-m", "bench.fake_telegram", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={"PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().split()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def fake_api() -> Iterator[tuple[str, str]]:
    """The fake Bot API: (API URL, kind)."""
    with _fake_telegram() as (url, kind):
        yield url, kind


@contextlib.contextmanager
def driver() -> Iterator[tuple[str, str]]:
    """The fake Bot API that also drives the webhook: (API URL, control URL)."""
    with _fake_telegram("--drive") as (url, _kind, control):
        yield url, control


_bases = iter(range(1, 1_000_000))


def scenario(control: str, port: int, **spec: Any) -> dict[str, Any]:
    base = (os.getpid() % 1000) * 1_000_000 + next(_bases) * 10_000
    body = json.dumps({"port": port, "secret": SECRET, "base": base, **spec}).encode()
    request = urllib.request.Request(
        f"{control}/run", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


def fair_queue(accepted: dict[str, list[float]]) -> dict[str, list[float]]:
    """When each reply would go in a fair queue with no cost of its own: at most SEND_LIMIT a
    second (bursts of as many) and PER_CHAT_RATE per chat (bursts of PER_CHAT_BURST); a
    chat's replies in order, each from its update's 200 (`accepted`, seconds) or its
    previous reply, whichever is later; among the replies that may go, the one waiting
    longest first."""
    sent: dict[str, list[float]] = {chat: [] for chat in accepted}
    bot = (SEND_LIMIT, 0.0)  # (tokens, at)
    chats = {chat: (PER_CHAT_BURST, 0.0) for chat in accepted}

    def ready(bucket: tuple[float, float], rate: float) -> float:
        tokens, at = bucket
        return at if tokens >= 1.0 else at + (1.0 - tokens) / rate

    def spend(
        bucket: tuple[float, float], rate: float, cap: float, now: float
    ) -> tuple[float, float]:
        tokens, at = bucket
        return min(cap, tokens + (now - at) * rate) - 1.0, now

    while True:
        waiting = []  # (chat, since, may go at)
        for chat, times in accepted.items():
            n = len(sent[chat])
            if n < len(times):
                since = max(times[n], sent[chat][-1] if n else 0.0)
                waiting.append((chat, since, max(since, ready(chats[chat], PER_CHAT_RATE))))
        if not waiting:
            return sent
        bot_ready = ready(bot, SEND_LIMIT)
        now = min(max(at, bot_ready) for _, _, at in waiting)
        # Longest waiting first; at a tie (replies accepted in one instant) the chat sent
        # fewer so far, round-robin as `bot.ratelimit.Pacer` serves waiting chats.
        chat = min((w for w in waiting if w[2] <= now), key=lambda w: (w[1], len(sent[w[0]])))[0]
        bot = spend(bot, SEND_LIMIT, SEND_LIMIT, now)
        chats[chat] = spend(chats[chat], PER_CHAT_RATE, PER_CHAT_BURST, now)
        sent[chat].append(now)


def chat_lags(burst: dict[str, Any]) -> dict[str, Any]:
    """Each chat's worst lag from an update's 200 to its reply, measured and in the fair
    queue; the chats with all their replies only."""
    detail = burst["detail"]
    accepted = {
        chat: d["accepted"]
        for chat, d in detail.items()
        if len(d["accepted"]) == BURST_PER_CHAT and len(d["replies"]) >= BURST_PER_CHAT
    }
    ideal = fair_queue(accepted)

    def worst(times: list[float], chat: str) -> float:
        return float(max(t - a for t, a in zip(times, accepted[chat], strict=False)))

    measured = {chat: worst(detail[chat]["replies"], chat) for chat in accepted}
    fair = {chat: worst(ideal[chat], chat) for chat in accepted}
    excess = sorted(measured[chat] - fair[chat] for chat in accepted)
    ordered, ordered_fair = sorted(measured.values()), sorted(fair.values())
    middle = len(ordered) // 2
    return {
        "chats": len(accepted),
        "median": ordered[middle] if ordered else float("nan"),
        "worst": ordered[-1] if ordered else float("nan"),
        "fair_median": ordered_fair[middle] if ordered else float("nan"),
        "fair_worst": ordered_fair[-1] if ordered else float("nan"),
        "excess_median": excess[middle] if excess else float("nan"),
        "excess_worst": excess[-1] if excess else float("nan"),
        "over_slack": sum(1 for e in excess if e > FAIR_SLACK_S),
        "fair": bool(excess) and excess[-1] <= FAIR_SLACK_S,
        "old_check_fair_queue": bool(ideal)
        and max(times[0] for times in ideal.values()) < min(times[-1] for times in ideal.values()),
    }


def one_at_a_time_pairs(
    count: int, label: str, run: Callable[[str], dict[str, Any]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """`count` (Telegram, web) pairs: each channel's turns of one `run("interleaved")`, a web
    conversation and a Telegram chat taking turns, one request in flight, after a
    `run("web")` of the web channel alone. Both channels' turns of a pair meet the machine
    at the same moments: measured in two runs a few seconds apart, web then Telegram, the
    machine's speed moved between the halves, and a pair's ratio went anywhere from 0.89x to
    1.86x on one machine where the interleaved runs gave 1.11x to 1.19x (BENCHMARKS.md).
    The web run alone warms the fresh server; its p50 goes in the Telegram half's
    "web_alone_p50_ms", for the stricter comparison (the outbox sending the chat's replies
    meanwhile is then Telegram's alone)."""
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for alone, both in alternated_pairs(
        count,
        f"telegram {label}: the web channel alone, then a web conversation and a chat in turn",
        partial(run, "web"),
        partial(run, "interleaved"),
    ):
        run_of_both = {"errors": both["errors"], "steal_share": both["steal_share"]}
        telegram = {
            **both["channels"]["telegram"],
            **run_of_both,
            "web_alone_p50_ms": alone["p50_ms"],
            "web_alone_errors": alone["errors"],
        }
        pairs.append((telegram, {**both["channels"]["web"], **run_of_both}))
    return pairs


@contextlib.contextmanager
def pair_servers(kind: str, t: dict[str, float]) -> Iterator[Callable[[str], dict[str, Any]]]:
    """`run(mode)` for `one_at_a_time_pairs`: one request at a time, each pair on a server of
    its own, started for the pair's web run (its first) once the pair before's is stopped. A
    closed loop of one chat commits replies far faster than the send limit lets them go: on a
    fast machine its 6 s left minutes of them, which the next pair's runs waited for (180 s,
    then measured anyway, sharing the server with the rest: BENCHMARKS.md). A fresh server
    has none, and the web run warms it for the interleaved run."""
    with contextlib.ExitStack() as current:
        server: list[tuple[int, int]] = []

        def run(mode: str) -> dict[str, Any]:
            if mode == "web" or not server:
                current.close()
                server.clear()
                url = current.enter_context(database(kind))
                api_url, _kind = current.enter_context(fake_api())
                port, proc = current.enter_context(app_server(url, telegram_api=api_url))
                server.append((port, proc.pid))
            port, pid = server[0]
            return load(mode, port, concurrency=1, server_pid=pid, **t)

        yield run


def p50_ratio(pair: tuple[dict[str, Any], dict[str, Any]]) -> float:
    """Telegram's p50 over the web turn's."""
    return _over(pair[0]["p50_ms"], pair[1]["p50_ms"])


def _over(telegram_ms: float, web_ms: float) -> float:
    """Telegram's time over the web's (a web time of 0 counts as 1 ns)."""
    return float(telegram_ms) / max(float(web_ms), 1e-9)


def ms(stats: dict[str, float]) -> str:
    return f"{stats['p50_ms']:.1f} / {stats['p99_ms']:.1f} ms"


def limit_rows(kind: str, quick: bool) -> list[Row]:
    """Reply latency under the send limit, a burst above it, and the webhook's own work."""
    label = "SQLite" if kind == "sqlite" else "PostgreSQL"
    t = timing(quick)
    with pair_servers(kind, t) as one_at_a_time:
        pairs = one_at_a_time_pairs(TARGET_PAIRS, label, one_at_a_time)
    # The pair with the median ratio of p50s (as for the web rows: one pair alone is noise).
    shown = ", ".join(f"{p50_ratio(pair):.2f}x" for pair in pairs)
    alone = ", ".join(f"{_over(tg['p50_ms'], tg['web_alone_p50_ms']):.2f}x" for tg, _ in pairs)
    one_tg, one_web = median_by(pairs, p50_ratio)
    # A fresh server for the send-limit rows: the closed loop above commits replies faster
    # than 30/s, and their backlog would still be draining, ahead of the paced replies.
    with (
        database(kind) as url,
        driver() as (api_url, control),
        app_server(url, telegram_api=api_url) as (port, _proc),
    ):
        log(f"telegram {label}: replies at {PACED_RATE:.0f} updates/s over {PACED_CHATS} chats")
        paced = scenario(
            control,
            port,
            scenario="paced",
            rate=PACED_RATE,
            chats=PACED_CHATS,
            duration=t["duration"] + t["warmup"],
        )
        time.sleep(1.0)  # the per-chat buckets of the paced run refill
        log(f"telegram {label}: a burst of {BURST_CHATS} chats x {BURST_PER_CHAT} updates")
        burst = scenario(
            control, port, scenario="burst", chats=BURST_CHATS, per_chat=BURST_PER_CHAT
        )
    rows: list[Row] = []
    row = Row(
        f"telegram webhook vs web turn, one at a time, p50, {label}",
        fmt(one_tg["p50_ms"], " ms"),
        fmt(one_web["p50_ms"], " ms"),
        ratio(one_tg["p50_ms"], one_web["p50_ms"]),
        "≤ 1.5x",
        yes_no(one_tg["p50_ms"] <= 1.5 * one_web["p50_ms"]),
    )
    row.note = (
        f"receipt to the 200 after commit, one request at a time: a web conversation and a "
        f"Telegram chat taking turns on one server, so that the machine's ups and downs fall "
        f"on both (bench.loadgen interleaved): telegram {one_tg['rate']:.0f}/s p99 "
        f"{one_tg['p99_ms']:.1f} ms, web {one_web['rate']:.0f}/s p99 "
        f"{one_web['p99_ms']:.1f} ms; {one_tg['errors']} errors; the median of {len(pairs)} "
        f"such runs ({shown}), each on a fresh server warmed by a web run alone "
        f"({one_tg['web_alone_errors']} errors); Telegram against that web run alone, seconds "
        f"apart ({alone}); "
        f"{STEAL_NOTE}: {share_note(one_tg['steal_share'])} during the run shown"
    )
    rows.append(row)
    reply = paced["reply_after_200"]
    row = Row(
        f"telegram reply after commit p50/p99, {PACED_RATE:.0f} updates/s (50% of limit), {label}",
        ms(reply),
        "",
        "",
        "p99 ≤ 50 ms",
        yes_no(reply["p99_ms"] <= 50.0 and paced["missing"] == 0 and paced["errors"] == 0),
    )
    row.note = (
        f"from the webhook's 200 (sent right after the commit) to the reply reaching the Bot "
        f"API, on one clock; {paced['updates']} updates ({paced['achieved_rate']:.1f}/s) over "
        f"{PACED_CHATS} chats, each answering after its reply; webhook "
        f"{ms(paced['webhook'])}; from posting the update to its reply "
        f"{ms(paced['reply_after_post'])}; {paced['errors']} errors, {paced['missing']} "
        f"replies missing; Bot API calls {paced['calls']}"
    )
    rows.append(row)
    total = BURST_CHATS * BURST_PER_CHAT
    ideal = max(0.0, (total - SEND_LIMIT) / SEND_LIMIT)
    drained = burst["replies"] >= total and burst["errors"] == 0
    lags = chat_lags(burst)
    row = Row(
        f"telegram burst {BURST_CHATS} chats x {BURST_PER_CHAT}: drain, {label}",
        fmt(burst["drain_s"], " s"),
        fmt(ideal, " s"),
        ratio(burst["drain_s"], ideal),
        "≈ 1x of 30/s",
        yes_no(drained and burst["drain_s"] <= 1.25 * ideal + 0.5),
    )
    row.note = (
        f"{burst['replies']}/{total} replies; all updates posted (200) after "
        f"{burst['posting_s']:.2f} s; ideal = (replies - burst of 30) / 30 per s; lag of a "
        f"reply after its 200 p50/p99/max {burst['lag']['p50_ms']:.0f} / "
        f"{burst['lag']['p99_ms']:.0f} / {burst['lag']['max_ms']:.0f} ms; {burst['errors']} "
        f"errors; Bot API calls {burst['calls']}"
    )
    rows.append(row)
    row = Row(
        f"telegram burst: each chat's worst lag after its 200, median / worst chat, {label}",
        f"{lags['median']:.2f} / {lags['worst']:.2f} s",
        f"{lags['fair_median']:.2f} / {lags['fair_worst']:.2f} s",
        "",
        f"fair: every chat ≤ {FAIR_SLACK_S:.0f} s over the fair queue",
        yes_no(lags["fair"]),
    )
    row.note = (
        f"baseline: a fair queue at 30/s (bursts of 30) and 1/s per chat (bursts of 3), "
        f"no cost of its own, fed the same 200s, longest waiting first; a chat's lag over "
        f"that queue's, median / worst chat {lags['excess_median']:+.2f} / "
        f"{lags['excess_worst']:+.2f} s, {lags['over_slack']} of {lags['chats']} chats "
        f"over {FAIR_SLACK_S:.0f} s; the old check (every chat's first reply before any "
        f"chat's last) {yes_no(burst['fair'])} here and "
        f"{yes_no(lags['old_check_fair_queue'])} for the fair queue itself"
    )
    rows.append(row)
    return rows


def parse_row(quick: bool) -> Row:
    """CPU per update to read what it means: the webhook's own reading against PTB's
    `Update.de_json` + `classify`, over the benchmark conversation's real-shaped updates."""
    from telegram import Bot, Update

    from bench.updates import BOT_TOKEN, conversation_updates, prompts
    from bot.channels.telegram.updates import classify, read_update

    bot = Bot(BOT_TOKEN)
    bodies = [json.dumps(u).encode() for u in conversation_updates(77, prompts())]
    rounds = 200 if quick else 1000

    def lean() -> None:
        for body in bodies:
            read_update(json.loads(body), bot)

    def ptb() -> None:
        for body in bodies:
            update = Update.de_json(json.loads(body), bot)
            assert update is not None
            classify(update)

    def per_update(work: Any) -> float:
        best = float("inf")
        for _ in range(5):
            started = time.process_time()
            for _ in range(rounds // 5):
                work()
            best = min(best, (time.process_time() - started) / (rounds // 5) / len(bodies))
        return best * 1e6

    ours, baseline = per_update(lean), per_update(ptb)
    row = Row(
        "telegram update read: JSON dict vs PTB de_json (CPU/update)",
        fmt(ours, " µs"),
        fmt(baseline, " µs"),
        ratio(ours, baseline),
    )
    row.note = (
        f"json.loads + what the update means, best of 5 x {rounds // 5} passes over the "
        f"{len(bodies)} updates of the benchmark conversation (texts and button taps)"
    )
    return row


def run_backend(kind: str, quick: bool, context: dict[str, Any]) -> list[Row]:
    label = "SQLite" if kind == "sqlite" else "PostgreSQL"
    t = timing(quick)
    ceiling = context.get("ceiling", {}).get(kind, {}).get(CONCURRENCY)
    with (
        database(kind) as url,
        fake_api() as (api_url, fake_kind),
        app_server(url, telegram_api=api_url) as (port, proc),
    ):
        log(f"telegram {label}: {CONCURRENCY} chats through the webhook")
        ours = load("telegram", port, concurrency=CONCURRENCY, server_pid=proc.pid, **t)
    if ceiling is None:
        with database(kind) as curl, ceiling_server(curl) as (cport, cproc):
            log(f"telegram {label}: ceiling")
            ceiling = load("ceiling", cport, concurrency=CONCURRENCY, server_pid=cproc.pid, **t)
    row = Row(
        f"telegram webhook turns/s, {label}, {CONCURRENCY} chats",
        fmt(ours["rate"], "/s"),
        fmt(ceiling["rate"], "/s"),
        ratio(ours["rate"], ceiling["rate"]),
        "",
        "",
    )
    row.note = (
        f"{ours['turns']} updates, {ours['conversations_completed']} conversations submitted, "
        f"{ours['errors']} errors {ours['first_errors'][:1]}, p50 {ours['p50_ms']:.0f} ms, "
        f"server CPU {ours['server_cpu_share']:.0%} ({cpu_ms(ours):.2f} ms/update), "
        f"{batch_note(ours)}, generator CPU "
        f"{ours['generator_cpu_share']:.0%}; fake Bot API: {fake_kind}"
    )
    rate = max(1.0, ours["rate"] / 2)
    # A fresh server (the saturated run's replies would still be draining at the send limit),
    # so a longer warm-up at the same rate: its first seconds open every pooled connection and
    # prepare every statement on it, which on a slow machine took 2.5 s and, counted, made the
    # p99 that cold start's (BENCHMARKS.md). The web rows measure a server already warm.
    open_timing = {**t, "warmup": t["warmup"] + OPEN_LOOP_EXTRA_WARMUP_S}
    with (
        database(kind) as url,
        fake_api() as (api_url, fake_kind),
        app_server(url, telegram_api=api_url) as (port, proc),
    ):
        log(f"telegram {label}: open loop at {rate:.0f} updates/s (50% of saturated)")
        open_loop = settled(
            kind,
            partial(
                probed,
                partial(
                    load,
                    "telegram",
                    port,
                    concurrency=CONCURRENCY,
                    rate=rate,
                    server_pid=proc.pid,
                    **open_timing,
                ),
            ),
        )
    latency = Row(
        f"telegram webhook p50/p99 at 50% load ({rate:.0f}/s), {label}",
        f"{open_loop['p50_ms']:.1f} / {open_loop['p99_ms']:.1f} ms",
        "",
        "",
        "p99 ≤ 50 ms",
        verdict(
            open_loop["p99_ms"] <= 50.0 and open_loop["errors"] == 0,
            open_loop["disk"],
            open_loop["steal_share"],
            slower_by(open_loop["speed"], ours["speed"]),
        ),
    )
    latency.note = (
        f"open loop, achieved {open_loop['rate']:.0f}/s, max {open_loop['max_ms']:.0f} ms, "
        f"{open_loop['errors']} errors, {carried_note(open_loop)}, server CPU "
        f"{open_loop['server_cpu_share']:.0%} "
        f"({cpu_ms(open_loop):.2f} ms/update){database_note(kind, open_loop)}, "
        f"{batch_note(open_loop)}{wal.note(open_loop)}; a "
        f"fresh server, warmed {open_timing['warmup']:.1f} s at that rate first; generator CPU "
        f"{open_loop['generator_cpu_share']:.0%}; "
        f"{PROBE_NOTE}: {disk_note(open_loop['disk'])}; {STEAL_NOTE}: "
        f"{share_note(open_loop['steal_share'])}; {BUSY_NOTE}: "
        f"{share_note(open_loop['busy_share'])}; {SPEED_NOTE}: "
        f"{speed_note(open_loop['speed'], ours['speed'])}"
    )
    return [row, latency, *limit_rows(kind, quick)]


def rows(quick: bool = False, context: dict[str, Any] | None = None) -> list[Row]:
    context = context if context is not None else {}
    try:
        import telegram  # noqa: F401
    except ImportError:
        return [Row.skipped("telegram webhook turns/s", "python-telegram-bot not installed")]
    out = [parse_row(quick), pacer_row(quick), *run_backend("sqlite", quick, context)]
    reason = postgres_available()
    if reason:
        out.append(Row.skipped("telegram webhook turns/s, PostgreSQL", reason))
    else:
        out += run_backend("postgres", quick, context)
    return out
