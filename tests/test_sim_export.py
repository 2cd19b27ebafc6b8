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
