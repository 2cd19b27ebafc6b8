"""Replay outputs: the per-step CSV, the summary JSON and two PNG plots (error vs horizon, energy along the bag)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """One row per grid step; columns are the union of all row keys in first-seen order, NaN left empty."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()})


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(path: Path, summary: dict[str, Any]) -> None:
    path.write_text(json.dumps(_json_safe(summary), indent=2) + "\n")


def plot_error_vs_horizon(path: Path, rollout: dict[str, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted(int(k) for k in rollout)
    means = [rollout[str(k)]["l1_mean"] for k in ks]
    stds = [rollout[str(k)]["l1_std"] for k in ks]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar(
        ks,
        [np.nan if m is None else m for m in means],
        yerr=[0 if s is None else s for s in stds],
        marker="o",
        capsize=3,
    )
    ax.set_xlabel("rollout horizon k (steps)")
    ax.set_ylabel("latent L1 error")
    ax.set_title("open-loop rollout error vs horizon")
    ax.set_xticks(ks)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_energy(path: Path, rows: list[dict[str, Any]], offsets: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for k in offsets:
        pts = [(r["time_s"], r.get(f"plan{k}_energy", math.nan)) for r in rows]
        t, e = np.array(pts, dtype=float).T if pts else (np.zeros(0), np.zeros(0))
        ax.plot(t, e, marker=".", label=f"goal t+{k}")
    ax.set_xlabel("bag time (s)")
    ax.set_ylabel("planned energy")
    ax.set_title("energy reached by the planner along the bag")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
