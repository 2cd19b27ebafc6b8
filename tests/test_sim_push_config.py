"""The push AC recipe validates against the training schema, reads what `vjepa2-sim-collect --task push` writes,
and is the reach recipe on other data (the same model, clips and budget)."""

from __future__ import annotations

from pathlib import Path

from test_sim_train_config import REPO

from vjepa2_core.training import ac_run
from vjepa2_core.training.config import load_config
from vjepa2_ros.sim.collect import VIDEO_FPS
from vjepa2_ros.sim.env import SimConfig


def test_push_recipe_is_the_reach_recipe_on_push_episodes():
    ac = ac_run  # the schema and checks of training/train_ac.py
    push = ac.check_config(load_config(REPO / "config/train/sim_push_ac.yaml", ac.SCHEMA, []))
    reach = ac.check_config(load_config(REPO / "config/train/sim_reach_ac.yaml", ac.SCHEMA, []))
    assert push["data"]["datasets"] == ["runs/sim_push/episodes/trajectories.csv"]
    assert Path(push["folder"]).parent == Path("runs/sim_push") and push["folder"] != reach["folder"]
    assert push["data"]["feature_cache"].startswith(push["folder"])
    assert push["data"]["fps"] == VIDEO_FPS and push["data"]["crop_size"] == SimConfig(task="push").image_size
    for section in ("model", "optimization", "loss"):
        assert push[section] == reach[section], section
    steps = push["optimization"]["epochs"] * push["optimization"]["ipe"]
    assert steps <= 2400, "sized like the reach recipe (about 20 min of training on this CPU)"
