"""Rank-0 metric logging: one CSV row per logged step (plus TensorBoard when it is installed)."""

from __future__ import annotations

import csv
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


class CSVLogger:
    """Appends rows with fixed columns. On resume, rows past the resumed step are dropped (they will be redone).

    Disabled (every call a no-op) on ranks other than 0.
    """

    def __init__(self, path: str | Path, columns: Sequence[str], enabled: bool = True, resume_step: int | None = None):
        self.path, self.columns, self.enabled = Path(path), list(columns), enabled
        self.tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step") and int(r["step"]) <= resume_step]
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.path.parent / "tensorboard"))
        except Exception:  # noqa: BLE001 - tensorboard is optional
            self.tb = None

    def log(self, row: Mapping[str, float | int | str]) -> None:
        if not self.enabled:
            return
        unknown = set(row) - set(self.columns)
        if unknown:
            raise KeyError(f"metrics {sorted(unknown)} are not CSV columns {self.columns}")
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns).writerow({k: _fmt(v) for k, v in row.items()})
        if self.tb is not None and "step" in row:
            for k, v in row.items():
                if k != "step" and isinstance(v, int | float):
                    self.tb.add_scalar(k, v, int(row["step"]))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _fmt(v):
    return repr(v) if isinstance(v, float) else v


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class Throughput:
    """Items per second over the last window of steps."""

    def __init__(self):
        self.t0, self.items = time.perf_counter(), 0

    def update(self, n: int) -> None:
        self.items += n

    def rate(self, reset: bool = True) -> float:
        now = time.perf_counter()
        r = self.items / max(1e-9, now - self.t0)
        if reset:
            self.t0, self.items = now, 0
        return r
