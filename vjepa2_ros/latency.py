"""Latency statistics of the node benches (`bench/ros_bench.py`): median and p95 of what was measured, and a clear
error when nothing was (a statistic of no samples is not a measurement)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class NoSamples(RuntimeError):
    """A benchmark ended without a single measurement (reported as an error, not as a statistic of nothing)."""


def summary(seconds: Sequence[float], name: str = "samples", why: str = "") -> dict[str, float]:
    """{"n", "median_ms", "p95_ms"} of `seconds`; NoSamples naming `name` (and `why`) when there are none."""
    if len(seconds) == 0:
        raise NoSamples(f"no {name} measured{': ' + why if why else ''}")
    ms = np.asarray(seconds) * 1000.0
    return {"n": int(ms.size), "median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95))}
