"""Shipping a trained model: the exported safetensors file loads by itself and plans exactly like the source."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from vjepa2_core.hub import CheckpointError, load_checkpoint, save_checkpoint
from vjepa2_core.hub.loading import make_random_checkpoint
from vjepa2_core.planning import WorldModel
from vjepa2_ros.sim.export import export


def test_export_round_trip(tmp_path):
    src = make_random_checkpoint(tmp_path / "latest.pt", "vit_ac_tiny", seed=1)
    info = export(src, tmp_path / "shipped.safetensors", note="test")
    assert info["size_mb"] < 20 and info["parameters"]["predictor"] > 0
    wm = WorldModel.from_checkpoint(info["path"])  # no name needed: model_config travels with the weights
    assert wm.crop_size == 64
    shipped, source = load_checkpoint(info["path"]), load_checkpoint(src)
    assert set(shipped) >= {"encoder", "predictor", "model_config"} and "opt" not in shipped
    for key, value in source["predictor"].items():
        torch.testing.assert_close(shipped["predictor"][key], value, rtol=0, atol=0)


def test_export_rejects_non_ac_checkpoints(tmp_path):
    bad = save_checkpoint(tmp_path / "bad.pt", {"weights": {"w": torch.zeros(2)}})
    with pytest.raises(CheckpointError, match="AC training checkpoint"):
        export(bad, tmp_path / "out.safetensors")
    res = subprocess.run(
        [sys.executable, "-m", "vjepa2_ros.sim.export", str(bad), str(tmp_path / "o.safetensors")],
        capture_output=True,
        text=True,
    )
    assert res.returncode != 0 and "AC training checkpoint" in res.stderr and "Traceback" not in res.stderr


def test_export_of_a_finetuned_encoder_ships_its_ema_target(tmp_path):
    """train_ac with meta.finetune_encoder saves the online encoder as `encoder` and its EMA copy as
    `target_encoder`; the shipped file plans with the EMA copy (the targets' feature space)."""
    src = make_random_checkpoint(tmp_path / "random.pt", "vit_ac_tiny", seed=1)
    ckpt = load_checkpoint(src)
    online = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in ckpt["encoder"].items()}
    src = save_checkpoint(tmp_path / "latest.pt", {**ckpt, "encoder": online, "target_encoder": ckpt["encoder"]})
    info = export(src, tmp_path / "shipped.safetensors")
    shipped = load_checkpoint(info["path"])["encoder"]
    for key, value in ckpt["encoder"].items():
        torch.testing.assert_close(shipped[key], value, rtol=0, atol=0)
