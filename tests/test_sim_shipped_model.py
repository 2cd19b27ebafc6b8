"""The world model shipped in the repository: small, self-describing, and it closes the loop in the simulator.

A short in-process run (no ROS) from seeded random starts must bring the arm clearly closer to the goal image's
arm position than it started; a model that ignored actions or the goal would leave the distance unchanged or
wander off (random actions end ~4 cm *farther* on average, see vjepa2_ros/models/README.md).
"""

from __future__ import annotations

import json

import numpy as np
import torch
from safetensors import safe_open

from vjepa2_ros.sim.env import FetchSim, SimConfig
from vjepa2_ros.sim.evaluate import EvalConfig, PlannerPolicy, evaluate, load_world_model
from vjepa2_ros.sim.export import MAX_SHIPPED_MB
from vjepa2_ros.sim.paths import SHIPPED_MODEL


def test_shipped_model_is_small_and_describes_itself():
    assert SHIPPED_MODEL.is_file(), f"{SHIPPED_MODEL} is missing (make sim-train)"
    assert SHIPPED_MODEL.stat().st_size < MAX_SHIPPED_MB * 2**20
    with safe_open(str(SHIPPED_MODEL), "pt") as f:
        meta = f.metadata()
    config = json.loads(meta["model_config"])
    assert config["encoder"]["img_size"] == SimConfig().image_size == config["predictor"]["img_size"]
    train = json.loads(json.loads(meta["extra"])["train_config"])
    # the model card must say which encoder the shipped model has (a random frozen one: it did better)
    assert train["meta"]["pretrain_checkpoint"] is None
    card = (SHIPPED_MODEL.parent / "README.md").read_text()
    assert "random-initialised and frozen" in card


def test_short_closed_loop_run_reduces_the_distance_to_the_goal(tmp_path):
    torch.set_num_threads(1)
    wm = load_world_model(SHIPPED_MODEL)
    cfg = EvalConfig(episodes=3, max_steps=10, seed=2000, planner_overrides={"cem.samples": 50, "cem.topk": 8})
    sim = FetchSim(SimConfig(image_size=cfg.image_size), seed=cfg.seed)
    try:
        res = evaluate(
            sim, PlannerPolicy(wm, cfg.planning(), seed=cfg.seed), cfg, tmp_path / "strip.png", log=lambda _: None
        )
    finally:
        sim.close()
    start = np.array([e["start_distance"] for e in res["episodes"]])
    final = np.array([e["final_distance"] for e in res["episodes"]])
    assert final.mean() < 0.6 * start.mean(), f"start {start.round(3)} -> final {final.round(3)} m"
    assert (final < start).sum() >= 2, f"start {start.round(3)} -> final {final.round(3)} m"
    assert res["summary"]["plan_s_per_step"] > 0 and (tmp_path / "strip.png").is_file()
