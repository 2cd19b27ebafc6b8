"""Probe-training throughput (clips/s) of the tiny CPU eval config: end to end and probe step only.

    .venv/bin/python bench/probe_bench.py [--videos 48] [--epochs 2] [--threads 1] [--heads 4]

End to end runs training/eval_probe.py on generated direction-of-motion MP4s (decode, transform, frozen encoder
over all segments, every head's forward/backward/AdamW) and reads the last epoch's training clips/s from its
log. "probe step" repeats one batch of ready tensors in-process, to show what the data pipeline costs.
Numbers depend on machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "eval" / "tiny_cpu" / "video_shapes.yaml"


def end_to_end(root: Path, videos: int, epochs: int, heads: int, threads: int) -> float:
    from vjepa2_core.data.motion_direction import write_direction_dataset
    from vjepa2_core.hub import make_random_checkpoint
    from vjepa2_core.training.config import load_yaml
    from vjepa2_core.training.metrics import read_csv

    train = write_direction_dataset(root / "train", videos, seed=1)
    val = write_direction_dataset(root / "val", 8, seed=2)
    ckpt = make_random_checkpoint(root / "enc.pt", "vit_pretrain_tiny")
    head_cfg = load_yaml(CONFIG)["experiment"]["optimization"]["multihead_kwargs"]
    sets = [
        f"model_kwargs.checkpoint={ckpt}",
        f"experiment.data.dataset_train={train}",
        f"experiment.data.dataset_val={val}",
        f"experiment.optimization.num_epochs={epochs}",
        f"experiment.optimization.multihead_kwargs={json.dumps((head_cfg * heads)[:heads])}",
        f"folder={root / 'out'}",
        "meta.log_every=1000",
    ]
    argv = ["--config", str(CONFIG)] + [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # the script's torch threads
    if subprocess.run([sys.executable, str(REPO / "training" / "eval_probe.py"), *argv], env=env).returncode != 0:
        raise RuntimeError("eval_probe.py failed")
    rows = read_csv(next((root / "out").rglob("log.csv")))
    return float(rows[-1]["clips_per_s"])


def probe_step(steps: int, batch: int, heads: int) -> float:
    from vjepa2_core.evals import ClipAggregation, build_head_optimizers
    from vjepa2_core.evals.engine import head_loss, head_outputs
    from vjepa2_core.hub import build_encoder_and_predictor
    from vjepa2_core.models.attentive_pooler import AttentiveClassifier

    encoder, _ = build_encoder_and_predictor("vit_pretrain_tiny", seed=0)
    model = ClipAggregation(encoder)
    classifiers = [AttentiveClassifier(96, 2, depth=1, num_classes=8) for _ in range(heads)]
    kw = dict(lr=1e-3, start_lr=1e-3, final_lr=0.0, warmup=0.0, weight_decay=0.01, final_weight_decay=0.01)
    optimizers, schedulers = build_head_optimizers(classifiers, [kw] * heads, ipe=steps, num_epochs=1)
    clips = [[torch.randn(batch, 3, 8, 64, 64)] for _ in range(2)]
    labels = torch.randint(0, 8, (batch,))
    t0 = time.perf_counter()
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()  # two warm-up steps
        for s in schedulers:
            s.step()
        loss = sum(head_loss(o, labels, "video") for o in head_outputs(classifiers, model(clips)))
        for o in optimizers:
            o.zero_grad()
        loss.backward()
        for o in optimizers:
            o.step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=48)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        e2e = end_to_end(Path(tmp), args.videos, args.epochs, args.heads, args.threads)
    step = probe_step(args.steps, 16, args.heads)
    print(
        f"probe training, tiny CPU config, {args.heads} heads, 2 segments x 8 frames @ 64 px, {args.threads} threads"
    )
    print(f"  end to end : {e2e:8.1f} clips/s")
    print(f"  probe step : {step:8.1f} clips/s (encoder + heads on ready tensors)")


if __name__ == "__main__":
    main()
