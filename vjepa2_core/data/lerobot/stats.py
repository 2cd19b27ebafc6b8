"""Feature statistics as LeRobot stores them (per episode in meta/episodes, aggregated in meta/stats.json).

LeRobot normalises policy inputs with these; our reader does not need them, but the real library expects them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
MAX_IMAGE_FRAMES = 100  # frames per episode that image statistics look at (evenly spaced)


def _py(values: np.ndarray) -> list:
    return values.tolist()


def feature_stats(values: np.ndarray) -> dict:
    """min/max/mean/std/count/quantiles over the rows of [T,k] values (bool and int min/max keep their type)."""
    x = np.asarray(values)
    xf = x.astype(np.float64)
    out = {"min": _py(x.min(axis=0)), "max": _py(x.max(axis=0)), "mean": _py(xf.mean(axis=0))}
    out |= {"std": _py(xf.std(axis=0)), "count": [len(x)]}
    out |= {name: _py(np.quantile(xf, q, axis=0)) for name, q in QUANTILES.items()}
    return out


def image_stats(frames: np.ndarray) -> dict:
    """Per-channel statistics of uint8 [T,H,W,3] frames scaled to 0..1, each of shape [3,1,1]."""
    idx = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), MAX_IMAGE_FRAMES)).round().astype(int))
    px = frames[idx].reshape(-1, 3).astype(np.float64) / 255.0
    stats = feature_stats(px)
    out = {k: [[[v]] for v in vals] for k, vals in stats.items() if k != "count"}
    out["count"] = [len(idx)]
    return {k: out[k] for k in stats}


def aggregate_stats(episodes: Sequence[dict]) -> dict:
    """Dataset statistics from per-episode ones: count-weighted means, pooled std, quantiles averaged."""
    out = {}
    for key in episodes[0] if episodes else []:
        per = [ep[key] for ep in episodes]
        n = np.array([p["count"][0] for p in per], dtype=np.float64)
        w = (n / n.sum()).reshape(-1, *[1] * (np.asarray(per[0]["mean"]).ndim))
        mean = np.array([p["mean"] for p in per], dtype=np.float64)
        var = np.array([p["std"] for p in per], dtype=np.float64) ** 2
        total_mean = (w * mean).sum(0)
        agg = {
            "min": _py(np.min([p["min"] for p in per], axis=0)),
            "max": _py(np.max([p["max"] for p in per], axis=0)),
            "mean": _py(total_mean),
            "std": _py(np.sqrt((w * (var + (mean - total_mean) ** 2)).sum(0))),
            "count": [int(n.sum())],
        }
        agg |= {q: _py((w * np.array([p[q] for p in per], dtype=np.float64)).sum(0)) for q in QUANTILES}
        out[key] = agg
    return out
