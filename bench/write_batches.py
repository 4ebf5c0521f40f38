"""How many writes went together per commit during a load run, read from the app's /metrics.

A turn whose only database work is its write joins the storage's write batch
(`storage.write_batches`): under a closed loop at saturation dozens go in one commit, under an
open loop at half that rate two to five, so each pays for more of a round trip and a commit.
Half the saturated rate is not half the work: a latency row's note shows the writes per
commit and the server's CPU per turn next to the saturated run's (BENCHMARKS.md, issue 16).

The note also counts the batches of the measured window that took over 50 and over 100 ms
from leaving their queue to their commit (`intake_storage_write_batch_seconds`, read by the
load generator just before the window opens and once its turns are answered:
"window_batches"). Every turn in such a batch, and every turn queued behind it, waited that
long, so a p99 over 50 ms with such batches is the database's or its disk's (a sync of
SQLite's WAL that stalled), and one without them the server's own. (The conversations'
spreading before the window, a closed loop's burst, makes a few long batches of its own in
every run: not counted.)
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from bench.common import HOST

#: The histograms of writes per batch and of its time to commit
#: (`bot.metrics.record_write_batch`).
METRIC = "intake_storage_write_batch_writes"
SECONDS_METRIC = "intake_storage_write_batch_seconds"
#: A batch slower than these (bucket bounds of `SECONDS_METRIC`) held up its turns past the
#: latency target, or twice that.
SLOW_SECONDS, SLOWER_SECONDS = 0.05, 0.1


@dataclass(frozen=True)
class Batches:
    """Write batches committed so far, all backends: how many, and the writes in them."""

    batches: float = 0.0
    writes: float = 0.0
    #: Batches that took over `SLOW_SECONDS`, and over `SLOWER_SECONDS`, to commit.
    slow: float = 0.0
    slower: float = 0.0

    def __sub__(self, before: Batches) -> Batches:
        return Batches(
            self.batches - before.batches,
            self.writes - before.writes,
            self.slow - before.slow,
            self.slower - before.slower,
        )

    @property
    def writes_per_batch(self) -> float:
        return self.writes / self.batches if self.batches else 0.0


def parse(text: str) -> Batches:
    """The batches in a Prometheus text exposition (`/metrics`)."""
    batches = writes = timed = within_slow = within_slower = 0.0
    for family in text_string_to_metric_families(text):
        if family.name not in (METRIC, SECONDS_METRIC):
            continue
        for sample in family.samples:
            if sample.name == f"{METRIC}_count":
                batches += sample.value
            elif sample.name == f"{METRIC}_sum":
                writes += sample.value
            elif sample.name == f"{SECONDS_METRIC}_count":
                timed += sample.value
            elif sample.name == f"{SECONDS_METRIC}_bucket":
                bound = float(sample.labels["le"])
                within_slow += sample.value if bound == SLOW_SECONDS else 0.0
                within_slower += sample.value if bound == SLOWER_SECONDS else 0.0
    return Batches(batches, writes, timed - within_slow, timed - within_slower)


def read(port: int, timeout: float = 5.0) -> Batches | None:
    """The app's batches so far, or None where nothing answers /metrics (a ceiling server)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=timeout) as answer:
            return parse(answer.read().decode())
    except OSError:
        return None


def note(result: dict[str, object]) -> str:
    """A row note's part on batching, from `bench.servers.load`'s result."""
    batches = result.get("write_batches")
    if not isinstance(batches, Batches) or not batches.batches:
        return "no write batches read"
    text = (
        f"{batches.writes_per_batch:.1f} writes a commit ({batches.writes:.0f} in "
        f"{batches.batches:.0f} batches, warm-up included)"
    )
    window = result.get("window_batches")
    if isinstance(window, dict):
        in_window = Batches(**window)
        text += (
            f"; in the window {in_window.slow:.0f} of {in_window.batches:.0f} batches took "
            f"over {SLOW_SECONDS * 1000:.0f} ms to commit, {in_window.slower:.0f} over "
            f"{SLOWER_SECONDS * 1000:.0f}"
        )
    return text
