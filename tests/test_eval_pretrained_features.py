"""What our pretraining gives a frozen-feature probe, checked after a short real run of `training/pretrain.py`:
the tokens move less under the probe's own training crops than a random encoder's do. This is what we measured
behind the few-label result (vjepa2_core/evals/README.md): with 16 labelled clips the attentive probe, trained on
augmented clips and scored on centre crops, does better on the pretrained tiny encoder than on a random one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vjepa2_core.data.motion_direction import write_direction_dataset
from vjepa2_core.data.synthetic_videos import write_moving_shapes_dataset
from vjepa2_core.evals import probe_run
from vjepa2_core.evals.build import build_datasets, build_feature_model
from vjepa2_core.evals.metrics import token_spread
from vjepa2_core.training.config import load_config

REPO = Path(__file__).resolve().parents[1]


def _crop_steadiness(model, train_set, val_set, n: int) -> float:
    """Mean cosine similarity of the centred tokens of a training-transform view and the centre view of a clip."""
    sims = []
    for i in range(n):
        (aug, _, idx_a), (centre, _, idx_c) = train_set[i], val_set[i]
        a = model([[seg[0][None]] for seg in aug], [x[None] for x in idx_a])[0][0]
        c = model([[seg[0][None]] for seg in centre], [x[None] for x in idx_c])[0][0]
        sims.append(F.cosine_similarity(a - a.mean(0), c - c.mean(0), dim=-1).mean())
    return float(torch.stack(sims).mean())


@pytest.mark.slow
def test_pretrained_tokens_are_steadier_under_the_probe_training_crops(tmp_path):
    csv, _ = write_moving_shapes_dataset(tmp_path / "pre", 24, num_frames=32, size=64, seed=7)
    cmd = [sys.executable, str(REPO / "training" / "pretrain.py")]
    cmd += ["--config", str(REPO / "config" / "train" / "pretrain_tiny_cpu.yaml")]
    for item in (f"folder={tmp_path / 'run'}", f"data.datasets=[{csv}]", "optimization.epochs=2"):
        cmd += ["--set", item]  # 100 steps of the shipped tiny recipe
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]

    clips = write_direction_dataset(tmp_path / "dir", 16, seed=5)
    overrides = [f"model_kwargs.checkpoint={tmp_path / 'run' / 'latest.pt'}"]
    overrides += [f"experiment.data.dataset_train={clips}", f"experiment.data.dataset_val={clips}"]
    config = REPO / "config" / "eval" / "tiny_cpu" / "video_shapes_few_labels.yaml"
    scores, spreads = {}, {}
    for random_init in (False, True):
        init = f"model_kwargs.random_init={str(random_init).lower()}"
        cfg = load_config(config, probe_run.SCHEMA, [*overrides, init])
        model = build_feature_model(cfg)
        train_set, val_set, _ = build_datasets(cfg, seed=0)
        with torch.no_grad():
            scores[random_init] = _crop_steadiness(model, train_set, val_set, n=16)
            spreads[random_init] = token_spread(model([[val_set[0][0][0][0][None]]], None)[0])["effective_rank"]
    print(f"\ncrop steadiness: pretrained {scores[False]:.3f}, random {scores[True]:.3f}; rank {spreads}")
    assert scores[False] > scores[True] + 0.05
    assert spreads[False] < spreads[True]  # and it has concentrated its features, as the collapse check shows
