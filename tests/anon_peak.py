"""Peak anonymous memory of a block of code, for the memory tests' subprocesses.

RssAnon, not the total RSS (`ru_maxrss`): under memory pressure the kernel drops a process's file-backed pages
(torch's shared libraries), so the total RSS can stay flat while a plan allocates hundreds of MB (a full-suite run
measured 6 MB of peak-RSS growth for a plan estimated at 450 MB). Anonymous memory is what a plan allocates.
"""

from __future__ import annotations

import threading


def rss_anon() -> int:
    """This process's resident anonymous memory in bytes (Linux /proc/self/status)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


class PeakAnon:
    """`with PeakAnon() as p: ...` -> `p.grown`: the largest RssAnon seen while the block ran, minus its value at
    entry. A thread samples every millisecond (torch ops release the GIL); a sample can only miss a peak, so the
    figure is a lower bound of the true growth."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval, self.base, self.peak = interval, 0, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(self.interval):
            self.peak = max(self.peak, rss_anon())

    def __enter__(self) -> PeakAnon:
        self.base = self.peak = rss_anon()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.peak = max(self.peak, rss_anon())
        self._done.set()
        self._thread.join()

    @property
    def grown(self) -> int:
        return self.peak - self.base
