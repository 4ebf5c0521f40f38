"""A thread that takes a sample every few milliseconds while a benchmark runs.

The bench's probes (`bench.disk.FsyncProbe`, `bench.speed.SpeedProbe`) measure the machine
beside a load run: `with Probe() as probe: run()`, then `probe.summary()`. This is their one
lifecycle: set up, sample every `interval` seconds on a daemon thread until the block ends,
then tear down once the thread has stopped.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Self


class Sampler:
    """Appends `sample()` to `samples` every `interval` seconds until the `with` block ends.

    Subclasses give `sample`, and `open` and `close` where the samples need something set up
    (called before the thread starts and after it has stopped)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)

    def sample(self) -> float:
        raise NotImplementedError

    def open(self) -> None:
        """Before the first sample."""

    def close(self) -> None:
        """After the last sample."""

    def __enter__(self) -> Self:
        self.open()
        self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(self.sample())
