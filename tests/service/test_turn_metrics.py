"""The turn and delivery counters count per label, every time, with the labelled children
looked up once (`bot.metrics._child`)."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY

from bot import metrics


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_turns_are_counted_per_channel_on_every_call() -> None:
    web, telegram = (
        value("intake_turns_total", channel="web"),
        value("intake_turns_total", channel="telegram"),
    )
    observed = value("intake_turn_seconds_count", channel="web")
    for _ in range(3):
        metrics.record_turn("web", time.perf_counter())
    metrics.record_turn("telegram", time.perf_counter())
    assert value("intake_turns_total", channel="web") == web + 3
    assert value("intake_turns_total", channel="telegram") == telegram + 1
    assert value("intake_turn_seconds_count", channel="web") == observed + 3


def test_failures_deliveries_and_survey_answers_are_counted_per_label() -> None:
    failed = value("intake_turn_failures_total", channel="telegram")
    done = value("intake_outbox_deliveries_total", topic="t.metrics", outcome="done")
    retry = value("intake_outbox_deliveries_total", topic="t.metrics", outcome="retry")
    answers = value("intake_survey_answers_total", step="s.metrics", choice="yes")
    for _ in range(2):
        metrics.record_failed_turn("telegram")
        metrics.record_delivery("t.metrics", "done", None)
        metrics.record_delivery("t.metrics", "retry", None)
        metrics.record_survey_answers([("s.metrics", "yes")])
    assert value("intake_turn_failures_total", channel="telegram") == failed + 2
    assert value("intake_outbox_deliveries_total", topic="t.metrics", outcome="done") == done + 2
    assert value("intake_outbox_deliveries_total", topic="t.metrics", outcome="retry") == retry + 2
    assert value("intake_survey_answers_total", step="s.metrics", choice="yes") == answers + 2
    # Only a delivery that was done, with a creation time, has a delay to observe.
    assert value("intake_outbox_delivery_delay_seconds_count", topic="t.metrics") == 0


#: The write-batch samples a test watches, backend "b.metrics": (metric, other labels).
_BATCH_SAMPLES = {
    "committed": ("intake_storage_write_batches_total", {"outcome": "committed"}),
    "failed": ("intake_storage_write_batches_total", {"outcome": "failed"}),
    "batches": ("intake_storage_write_batch_writes_count", {}),
    "writes": ("intake_storage_write_batch_writes_sum", {}),
    "up to 4 writes": ("intake_storage_write_batch_writes_bucket", {"le": "4.0"}),
    "timed": ("intake_storage_write_batch_seconds_count", {}),
    "within 10 ms": ("intake_storage_write_batch_seconds_bucket", {"le": "0.01"}),
    "within 250 ms": ("intake_storage_write_batch_seconds_bucket", {"le": "0.25"}),
}


def _batch_samples() -> dict[str, float]:
    return {
        key: value(name, backend="b.metrics", **labels)
        for key, (name, labels) in _BATCH_SAMPLES.items()
    }


def test_write_batches_are_counted_by_outcome_with_their_sizes_and_times() -> None:
    before = _batch_samples()
    metrics.record_write_batch("b.metrics", "committed", 3, 0.002)
    metrics.record_write_batch("b.metrics", "committed", 40, 0.009)
    metrics.record_write_batch("b.metrics", "failed", 2, 0.3)  # a sync that stalled
    after = _batch_samples()
    # Every batch's time to its outcome is observed, failed ones too: a stalled commit
    # stands out above the buckets the others fill.
    assert {key: after[key] - before[key] for key in _BATCH_SAMPLES} == {
        "committed": 2,
        "failed": 1,
        "batches": 3,
        "writes": 45,
        "up to 4 writes": 2,
        "timed": 3,
        "within 10 ms": 2,
        "within 250 ms": 2,
    }
