"""Aligning asynchronous sensor streams onto the model's control-rate grid (nearest sample within a tolerance)."""

from __future__ import annotations

import numpy as np

NS = 1_000_000_000


def control_grid(start_ns: int, end_ns: int, rate: float) -> np.ndarray:
    """Timestamps start, start + 1/rate, ... up to end (inclusive), int64 ns."""
    if rate <= 0:
        raise ValueError(f"control rate must be positive, got {rate}")
    if end_ns < start_ns:
        return np.zeros(0, dtype=np.int64)
    period = NS / rate
    count = int(np.floor((end_ns - start_ns) / period + 1e-9)) + 1
    return start_ns + np.round(np.arange(count) * period).astype(np.int64)


def nearest_within(stamps: np.ndarray, queries: np.ndarray, tolerance_ns: int) -> np.ndarray:
    """For each query, the index of the nearest stamp if it is within the tolerance, else -1.

    `stamps` must be sorted ascending (bag order); ties go to the earlier sample.
    """
    stamps = np.asarray(stamps, dtype=np.int64)
    queries = np.asarray(queries, dtype=np.int64)
    if stamps.size == 0:
        return np.full(queries.shape, -1, dtype=np.int64)
    right = np.searchsorted(stamps, queries, side="left").clip(0, stamps.size - 1)
    left = (right - 1).clip(0, stamps.size - 1)
    d_left = np.abs(queries - stamps[left])
    d_right = np.abs(stamps[right] - queries)
    best = np.where(d_left <= d_right, left, right)
    dist = np.minimum(d_left, d_right)
    return np.where(dist <= tolerance_ns, best, -1).astype(np.int64)


def overlap(streams: list[np.ndarray]) -> tuple[int, int] | None:
    """(latest first stamp, earliest last stamp) over the non-empty streams, or None if some stream is empty."""
    if any(len(s) == 0 for s in streams):
        return None
    return max(int(s[0]) for s in streams), min(int(s[-1]) for s in streams)
