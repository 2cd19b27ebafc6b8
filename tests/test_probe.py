"""Representation check: after a short real pretraining run on videos of a moving disc, a linear probe on frozen,
spatially pooled features reads the disc position better than on the same encoder at initialisation.

The probe encoder uses the sin-cos position table (model.use_rope=false): with RoPE, tokens carry no absolute
position, so no spatially pooled feature could hold it; with a fixed table, pooled features hold it only if
attention has learned to single out the object, which is what pretraining should teach.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vjepa2_core.data.synthetic_videos import moving_shape_frames, write_moving_shapes_dataset
from vjepa2_core.data.transforms import ac_preprocess
from vjepa2_core.hub import load_checkpoint, load_encoder
from vjepa2_core.training.checkpoint import seed_everything
from vjepa2_core.training.linear_probe import pooled_features, ridge_r2
from vjepa2_core.training.pretrain_step import build_models

REPO = Path(__file__).resolve().parents[1]
SEED = 234  # meta.seed of the tiny config: the run's initial weights are rebuilt from it


def probe_set(num_videos: int, seed0: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Held-out clips (3 per video, 8 frames) -> (clips, disc centre per tubelet [N*4, 2], video id per row)."""
    clips, centres, groups = [], [], []
    for v in range(num_videos):
        frames, c = moving_shape_frames(32, 64, seed=seed0 + v)
        for s in (0, 8, 16):
            clips.append(ac_preprocess(frames[s : s + 8], 64))
            centres.append(c[s : s + 8].reshape(4, 2, 2).mean(1))
            groups += [v] * 4
    return torch.stack(clips), np.concatenate(centres), np.asarray(groups)


def probe(encoder, clips, centres, groups, train_videos: int) -> float:
    feats = pooled_features(encoder, clips).reshape(-1, encoder.embed_dim).numpy()
    train, test = groups < train_videos, groups >= train_videos
    return ridge_r2(feats[train], centres[train], feats[test], centres[test])


@pytest.mark.slow
def test_pretraining_makes_object_position_linearly_readable(tmp_path):
    csv, _ = write_moving_shapes_dataset(tmp_path / "videos", 24, num_frames=32, size=64)
    cmd = [
        sys.executable,
        str(REPO / "training" / "pretrain.py"),
        "--config",
        str(REPO / "config" / "train" / "pretrain_tiny_cpu.yaml"),
        "--set",
        f"folder={tmp_path / 'run'}",
        "--set",
        f"data.datasets=[{csv}]",
        "--set",
        "model.use_rope=false",
        "--set",
        f"meta.seed={SEED}",
        "--set",
        "optimization.epochs=2",
        "--set",
        "optimization.ipe=50",
    ]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt_path = tmp_path / "run" / "latest.pt"
    pretrained = load_encoder(checkpoint=ckpt_path, key="target_encoder")
    seed_everything(SEED)
    initial = build_models(load_checkpoint(ckpt_path)["model_config"])[0].backbone

    clips, centres, groups = probe_set(60, seed0=10_000)  # videos never seen in pretraining
    r2_initial = probe(initial, clips, centres, groups, train_videos=40)
    r2_pretrained = probe(pretrained, clips, centres, groups, train_videos=40)
    print(
        f"\nlinear probe R^2 of disc position (20 held-out videos): initial {r2_initial:.3f}, "
        f"pretrained {r2_pretrained:.3f}"
    )
    assert r2_pretrained > 0.2
    assert r2_pretrained > r2_initial + 0.2
