"""Prometheus metrics (prometheus-client), safe with several worker processes.

Counters and histograms are kept per process; with `PROMETHEUS_MULTIPROC_DIR` set (the
supervisor of `intake serve --workers N` sets it before it spawns the workers) each process
writes them to files there and `/metrics`, in whichever worker answers, adds up all of them.
What lives in the database (outbox depth, dead letters, unacknowledged urgent reports) is read
from it at scrape time, so every worker reports the same numbers. No label ever carries
personal data: labels are channels, topics and outcomes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from bot.ports import OutboxTopicStats

__all__ = [
    "CONTENT_TYPE_LATEST",
    "exposition",
    "record_delivery",
    "record_failed_turn",
    "record_survey_answers",
    "record_turn",
    "record_write_batch",
]

TURNS = Counter("intake_turns_total", "Conversation turns handled", ["channel"])
TURN_SECONDS = Histogram(
    "intake_turn_seconds",
    "Time to handle one turn, from receipt to the committed reply",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
TURN_FAILURES = Counter(
    "intake_turn_failures_total",
    "Turns that failed for a reason a retry would not change (a bug), answered and not retried",
    ["channel"],
)
DELIVERIES = Counter(
    "intake_outbox_deliveries_total",
    "Outbox delivery attempts by topic and outcome (done, retry, failed)",
    ["topic", "outcome"],
)
DELIVERY_DELAY = Histogram(
    "intake_outbox_delivery_delay_seconds",
    "From an outbox message's creation to its delivery",
    ["topic"],
    buckets=(0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 7200.0),
)

WRITE_BATCHES = Counter(
    "intake_storage_write_batches_total",
    "Batches of lone writes (turns, new conversations, outbox claims) sent to the database "
    "together, by outcome: committed together; split (PostgreSQL refused one write, so each "
    "went again alone); failed (none committed: every caller got an error and may retry)",
    ["backend", "outcome"],
)
WRITE_BATCH_WRITES = Histogram(
    "intake_storage_write_batch_writes",
    "Writes in one batch: how many turns shared one commit",
    ["backend"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
WRITE_BATCH_SECONDS = Histogram(
    "intake_storage_write_batch_seconds",
    "Time from a batch of lone writes leaving its queue to its outcome: the connection "
    "waited for, the statements, the commit and the disk's sync. Every turn in the batch, and "
    "every turn queued behind it, waits this long",
    ["backend"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

SURVEY_ANSWERS = Counter(
    "intake_survey_answers_total",
    "Answers to the survey about the chat, by question step and choice (a typed question "
    "counts as answered or skipped; the words are never a label)",
    ["step", "choice"],
)


_Metric = TypeVar("_Metric", Counter, Histogram)
#: (metric, label values) -> that metric's child for them.
_children: dict[tuple[object, tuple[str, ...]], Any] = {}


def _child(metric: _Metric, *labels: str) -> _Metric:
    """`metric.labels(*labels)`, looked up once: `labels()` validates and finds the child
    under a lock on every call. The metric keeps every child it made anyway, so this holds
    no more than it does (a handful of channels, topics, outcomes and survey choices)."""
    key = (metric, labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return cast(_Metric, child)


def record_turn(channel: str, started: float) -> None:
    """Count a turn and its latency (`started` from time.perf_counter())."""
    _child(TURNS, channel).inc()
    _child(TURN_SECONDS, channel).observe(time.perf_counter() - started)


def record_write_batch(backend: str, outcome: str, writes: int, seconds: float) -> None:
    """One batch of lone writes (storage.write_batches.BatchEvents)."""
    _child(WRITE_BATCHES, backend, outcome).inc()
    _child(WRITE_BATCH_WRITES, backend).observe(writes)
    _child(WRITE_BATCH_SECONDS, backend).observe(seconds)


def record_survey_answers(answers: Sequence[tuple[str, str]]) -> None:
    """One submitted survey: (question step id, choice id or answered/skipped) pairs."""
    for step, choice in answers:
        _child(SURVEY_ANSWERS, step, choice).inc()


def record_failed_turn(channel: str) -> None:
    _child(TURN_FAILURES, channel).inc()


def record_delivery(topic: str, outcome: str, created_at: datetime | None) -> None:
    _child(DELIVERIES, topic, outcome).inc()
    if outcome == "done" and created_at is not None:
        _child(DELIVERY_DELAY, topic).observe(
            max(0.0, (datetime.now(UTC) - created_at).total_seconds())
        )


class _DatabaseGauges(Collector):
    """The numbers read from the database for this scrape."""

    def __init__(
        self, stats: Sequence[OutboxTopicStats], unacknowledged_urgent: int, now: datetime
    ) -> None:
        self._stats = stats
        self._unacknowledged = unacknowledged_urgent
        self._now = now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "intake_outbox_pending", "Outbox messages waiting to be delivered", labels=["topic"]
        )
        oldest = GaugeMetricFamily(
            "intake_outbox_oldest_pending_age_seconds",
            "Age of the oldest undelivered outbox message",
            labels=["topic"],
        )
        dead = GaugeMetricFamily(
            "intake_outbox_dead_letters",
            "Outbox messages given up on (see `intake outbox list`)",
            labels=["topic"],
        )
        for row in self._stats:
            depth.add_metric([row.topic], row.pending)
            age = (
                (self._now - row.oldest_pending_at).total_seconds()
                if row.oldest_pending_at is not None
                else 0.0
            )
            oldest.add_metric([row.topic], max(0.0, age))
            dead.add_metric([row.topic], row.failed)
        urgent = GaugeMetricFamily(
            "intake_urgent_reports_unacknowledged",
            "Urgent and urgent-review reports nobody has acknowledged yet",
            value=self._unacknowledged,
        )
        yield from (depth, oldest, dead, urgent)


def exposition(stats: Sequence[OutboxTopicStats], unacknowledged_urgent: int) -> bytes:
    """The text exposition: this process's (or all processes') counters, then the database's
    gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        processes = generate_latest(registry)
    else:
        from prometheus_client import REGISTRY

        processes = generate_latest(REGISTRY)
    database = CollectorRegistry()
    database.register(_DatabaseGauges(stats, unacknowledged_urgent, datetime.now(UTC)))
    return processes + generate_latest(database)
