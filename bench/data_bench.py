"""DROID loader and AC training throughput on generated episodes (real MP4 + HDF5).

    .venv/bin/python bench/data_bench.py [--episodes 24] [--steps 40] [--json out.json]

1. Loader clips/s with 0, 1, 2 DataLoader workers at the reference clip settings (8 frames at 4 fps from 15 fps
   video, 256 px crop) on 320x180 videos.
2. Training steps/s of config/train/ac_tiny_cpu.yaml without and with the encoder-feature cache (cache timed after
   its first filling pass).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vjepa2_core.data.droid import DROIDDataset, collate, write_episode

REPO = Path(__file__).resolve().parents[1]


def make_episodes(root: Path, n: int, frames: int = 60, size: tuple[int, int] = (180, 320)) -> Path:
    rng = np.random.default_rng(0)
    for _ in range(n):
        video = rng.integers(0, 255, (frames, *size, 3), dtype=np.uint8)
        video[:, :, ::8] = 0  # some structure for the codec
        cart = np.cumsum(rng.normal(0, 0.01, (frames, 6)), axis=0)
        write_episode(root, video, cart, rng.uniform(0, 1, frames))
    return root / "trajectories.csv"


def loader_clips_per_s(csv_path: Path, workers: int, batches: int = 6, batch_size: int = 4) -> float:
    ds = DROIDDataset(csv_path, frames_per_clip=8, fps=4, crop_size=256)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, num_workers=workers, collate_fn=collate, shuffle=True, drop_last=True
    )
    it, n = iter(loader), 0
    next(it)  # worker start-up is not throughput
    t0 = time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        n += batch.batch_size[0]
    return n / (time.perf_counter() - t0)


def train_steps_per_s(csv_path: Path, out: Path, steps: int, cache: Path | None) -> float:
    sets = [f"data.datasets=[{csv_path}]", f"folder={out}", f"meta.max_steps={steps}", "meta.eval_freq=0"]
    sets += [f"data.feature_cache={cache}"] if cache else []
    sets += ["meta.num_threads=1"]  # as this bench's own loader timing
    cmd = [
        sys.executable,
        str(REPO / "training" / "train_ac.py"),
        "--config",
        str(REPO / "config/train/ac_tiny_cpu.yaml"),
    ]
    subprocess.run([*cmd, *(a for s in sets for a in ("--set", s))], check=True)
    with open(out / "train.csv", newline="") as f:
        times = [float(r["time"]) for r in csv.DictReader(f)]
    warm = len(times) // 2  # skip start-up and (with the cache) the filling pass
    return (len(times) - 1 - warm) / (times[-1] - times[warm])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=24)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv_path = make_episodes(tmp / "episodes", args.episodes)
        for w in (0, 1, 2):
            results[f"loader_clips_per_s_workers{w}"] = loader_clips_per_s(csv_path, w)
            print(f"loader, {w} workers: {results[f'loader_clips_per_s_workers{w}']:.1f} clips/s", flush=True)
        results["train_steps_per_s"] = train_steps_per_s(csv_path, tmp / "run", args.steps, None)
        print(f"tiny AC training: {results['train_steps_per_s']:.2f} steps/s", flush=True)
        results["train_steps_per_s_cached"] = train_steps_per_s(csv_path, tmp / "run_c", args.steps, tmp / "cache")
        print(f"tiny AC training, feature cache: {results['train_steps_per_s_cached']:.2f} steps/s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
