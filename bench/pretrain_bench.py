"""Training throughput (clips/s) of the tiny pretraining config on CPU: end to end and model step only.

    .venv/bin/python bench/pretrain_bench.py [--steps 40] [--batch 8] [--workers 0] [--threads 2]
    python bench/pretrain_bench.py --device cuda --set meta.dtype=bfloat16 --size vit_large --batch 4   # GPU

End to end runs training/pretrain.py on generated MP4s (decode + augment + masks + step + EMA) and times the
logged steps after a warm-up window; "model step" repeats one masked batch in-process (forward, backward, AdamW,
EMA) to show how much of the time the data pipeline takes. Numbers depend on machine load.
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
sys.path.insert(0, str(REPO))

from vjepa2_core.data.synthetic_videos import write_moving_shapes_dataset  # noqa: E402
from vjepa2_core.devices import synchronize  # noqa: E402
from vjepa2_core.masks import VJEPA2_MASK_CFGS, MultiSeqMaskCollator  # noqa: E402
from vjepa2_core.training.config import load_yaml  # noqa: E402
from vjepa2_core.training.metrics import read_csv  # noqa: E402
from vjepa2_core.training.optim import autocast  # noqa: E402
from vjepa2_core.training.pretrain_step import (  # noqa: E402
    MaskedBatch,
    build_models,
    ema_update,
    jepa_loss,
    model_configs,
    predict_targets,
    target_features,
)

CONFIG = REPO / "config" / "train" / "pretrain_tiny_cpu.yaml"


def end_to_end(steps: int, batch: int, workers: int, threads: int, root: Path, device: str, sets: list[str]) -> float:
    csv, _ = write_moving_shapes_dataset(root / "videos", 16, num_frames=32, size=64)
    warm = max(1, steps // 4)
    cmd = [
        sys.executable,
        str(REPO / "training" / "pretrain.py"),
        "--config",
        str(CONFIG),
        "--set",
        f"folder={root / 'run'}",
        "--set",
        f"data.datasets=[{csv}]",
        "--set",
        f"data.batch_size={batch}",
        "--set",
        f"data.num_workers={workers}",
        "--set",
        f"meta.max_steps={steps}",
        "--set",
        f"meta.log_every={warm}",
        "--set",
        f"optimization.ipe={steps}",
        "--set",
        "optimization.epochs=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"pretrain.py failed:\n{proc.stderr[-3000:]}")
    rows = read_csv(root / "run" / "train.csv")
    (s0, t0), (s1, t1) = [(int(r["step"]), float(r["time_s"])) for r in (rows[0], rows[-1])]
    return batch * (s1 - s0) / (t1 - t0)


def model_step(steps: int, batch: int, device: str, size: str) -> float:
    """One masked batch repeated: forward, backward, AdamW, EMA (bf16 autocast + checkpointing on CUDA)."""
    cfg = load_yaml(CONFIG)["model"]
    crop, frames = 64, 8
    if size != "tiny":  # a reference size at the reference pretraining resolution
        cfg = {
            "model_name": size,
            "pred_depth": 12,
            "pred_embed_dim": 384,
            "pred_num_heads": 12,
            "use_activation_checkpointing": device == "cuda",
        }
        crop, frames = 256, 16
    dev = torch.device(device)
    encoder, predictor, target = (m.to(dev) for m in build_models(model_configs(cfg, crop, frames, num_mask_tokens=2)))
    opt = torch.optim.AdamW(list(encoder.parameters()) + list(predictor.parameters()), lr=1e-4)
    coll = MultiSeqMaskCollator(VJEPA2_MASK_CFGS, dataset_fpcs=[frames], crop_size=crop)
    samples = [([torch.randn(3, frames, crop, crop)], 0, [torch.arange(frames)]) for _ in range(batch)]
    mb = MaskedBatch.from_collator(coll(samples), dev)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    for i in range(steps + 3):
        if i == 3:
            synchronize(dev)
            t0 = time.perf_counter()
        with autocast(dev, dtype):
            h = target_features(target, mb.clips)
            loss = jepa_loss(predict_targets(encoder, predictor, mb), h, mb.masks_pred)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema_update(target.backbone, encoder.backbone, 0.999)
    synchronize(dev)
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--size", default="tiny", help="model-step size: tiny or an encoder name such as vit_large")
    p.add_argument("--set", dest="sets", action="append", default=[], help="override for the end-to-end run")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        e2e = end_to_end(args.steps, args.batch, args.workers, args.threads, Path(tmp), args.device, args.sets)
    step = model_step(args.steps, args.batch, args.device, args.size)
    result = {
        "bench": "pretrain_tiny_cpu",
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "end_to_end": "tiny config: 64 px, 8 frames, 96-wide x 2-block encoder",
        "model_step_size": args.size,
        "batch": args.batch,
        "threads": args.threads,
        "workers": args.workers,
        "end_to_end_clips_per_s": round(e2e, 2),
        "model_step_clips_per_s": round(step, 2),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
