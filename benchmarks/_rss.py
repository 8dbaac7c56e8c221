"""Peak resident memory of a benchmark's child process, sampled while it works.

``resource.getrusage(...).ru_maxrss`` will not do in a child: Linux carries a process's
peak across ``exec``, so a child started by a parent that once held more memory reports
its parent's peak. :class:`PeakRSS` reads ``/proc/self/statm`` every few milliseconds
instead.
"""

from __future__ import annotations

import os
import threading
from types import TracebackType


def rss_mb() -> float:
    """Current resident memory of this process, in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """``with PeakRSS() as memory: ...``, then ``memory.baseline_mb``, ``memory.peak_mb``, ``memory.above_mb``."""

    def __init__(self, every: float = 0.005) -> None:
        self.every = every
        self.baseline_mb = self.peak_mb = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.peak_mb = max(self.peak_mb, rss_mb())

    def __enter__(self) -> PeakRSS:
        self.baseline_mb = self.peak_mb = rss_mb()
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb())

    @property
    def above_mb(self) -> float:
        """The peak above the memory held on entering."""
        return self.peak_mb - self.baseline_mb
