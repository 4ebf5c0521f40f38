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


def test_write_batches_are_counted_by_outcome_with_their_sizes_and_times() -> None:
    committed = value(
        "intake_storage_write_batches_total", backend="b.metrics", outcome="committed"
    )
    failed = value("intake_storage_write_batches_total", backend="b.metrics", outcome="failed")
    batches = value("intake_storage_write_batch_writes_count", backend="b.metrics")
    writes = value("intake_storage_write_batch_writes_sum", backend="b.metrics")
    up_to_four = value("intake_storage_write_batch_writes_bucket", backend="b.metrics", le="4.0")
    timed = value("intake_storage_write_batch_seconds_count", backend="b.metrics")
    within_10_ms = value(
        "intake_storage_write_batch_seconds_bucket", backend="b.metrics", le="0.01"
    )
    within_250_ms = value(
        "intake_storage_write_batch_seconds_bucket", backend="b.metrics", le="0.25"
    )
    metrics.record_write_batch("b.metrics", "committed", 3, 0.002)
    metrics.record_write_batch("b.metrics", "committed", 40, 0.009)
    metrics.record_write_batch("b.metrics", "failed", 2, 0.3)  # a sync that stalled
    assert (
        value("intake_storage_write_batches_total", backend="b.metrics", outcome="committed")
        == committed + 2
    )
    assert (
        value("intake_storage_write_batches_total", backend="b.metrics", outcome="failed")
        == failed + 1
    )
    assert value("intake_storage_write_batch_writes_count", backend="b.metrics") == batches + 3
    assert value("intake_storage_write_batch_writes_sum", backend="b.metrics") == writes + 45
    assert (
        value("intake_storage_write_batch_writes_bucket", backend="b.metrics", le="4.0")
        == up_to_four + 2
    )
    # Every batch's time to its outcome, failed ones too: a stalled commit stands out.
    assert value("intake_storage_write_batch_seconds_count", backend="b.metrics") == timed + 3
    assert (
        value("intake_storage_write_batch_seconds_bucket", backend="b.metrics", le="0.01")
        == within_10_ms + 2
    )
    assert (
        value("intake_storage_write_batch_seconds_bucket", backend="b.metrics", le="0.25")
        == within_250_ms + 2
    )
