"""The sim training recipe: both configs validate against the training schemas and fit together."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from vjepa2_core.training import ac_run, pretrain_run
from vjepa2_core.training.config import load_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def configs() -> tuple[dict, dict]:
    pre, ac = pretrain_run, ac_run  # the schemas of training/pretrain.py and training/train_ac.py
    pre_cfg = load_config(REPO / "config/train/sim_reach_pretrain.yaml", pre.SCHEMA, [])
    ac_cfg = ac.check_config(load_config(REPO / "config/train/sim_reach_ac.yaml", ac.SCHEMA, []))
    return pre_cfg, ac_cfg


def test_encoder_of_pretraining_fits_post_training(configs):
    pre, ac = configs
    assert ac["meta"]["pretrain_checkpoint"] is None  # the shipped recipe: a random frozen encoder
    ablation = subprocess.run(
        ["make", "-n", "--no-print-directory", "sim-train-pretrained-encoder"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MAKEFLAGS": ""},
    ).stdout
    post = [line for line in ablation.splitlines() if "training/train_ac.py" in line]
    assert len(post) == 1 and "meta.pretrain_checkpoint=runs/sim_reach/pretrain/latest.pt" in post[0], ablation
    assert pre["folder"] == "runs/sim_reach/pretrain"
    for key in ("model_name", "embed_dim", "depth", "num_heads"):
        assert pre["model"][key] == ac["model"][key], key
    for key in ("crop_size", "patch_size", "tubelet_size"):
        assert pre["data"][key] == ac["data"][key], key


def test_recipe_reads_what_collect_writes(configs):
    from vjepa2_ros.sim.collect import VIDEO_FPS, VIDEO_LIST
    from vjepa2_ros.sim.env import SimConfig

    pre, ac = configs
    episodes = Path(ac["data"]["datasets"][0]).parent
    assert ac["data"]["datasets"] == [str(episodes / "trajectories.csv")]
    assert pre["data"]["datasets"] == [str(episodes / VIDEO_LIST)]
    assert ac["data"]["fps"] == VIDEO_FPS, "one clip frame per control step"
    assert ac["data"]["crop_size"] == SimConfig().image_size
    assert not ac["data_aug"]["horizontal_flip"] and not pre["data_aug"]["horizontal_flip"]
