"""`vjepa2-sim-eval`: same episodes for every policy, honest baselines, planner plumbing, film strip, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from vjepa2_core.hub.loading import make_random_checkpoint
from vjepa2_ros.sim.env import FetchSim, SimConfig
from vjepa2_ros.sim.evaluate import (
    EvalConfig,
    OraclePolicy,
    PlannerPolicy,
    RandomPolicy,
    evaluate,
    load_world_model,
    main,
    scale_to_step,
)


@pytest.fixture(scope="module")
def sim():
    s = FetchSim(SimConfig(image_size=48), seed=0)
    yield s
    s.close()


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    return make_random_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors", "vit_ac_tiny", seed=0)


def test_baselines_bracket_the_task(sim, tmp_path):
    cfg = EvalConfig(episodes=3, max_steps=8)
    oracle = evaluate(sim, OraclePolicy(), cfg, tmp_path / "oracle.png", log=lambda _: None)
    rand = evaluate(sim, RandomPolicy(0), cfg, None, log=lambda _: None)
    starts = [e["start_distance"] for e in oracle["episodes"]]
    assert starts == [e["start_distance"] for e in rand["episodes"]], "policies must share starts and goals"
    assert min(starts) >= sim.cfg.min_start_goal_distance
    assert oracle["summary"]["success_rate_3cm"] == 1.0 and oracle["summary"]["mean_final_distance_m"] < 0.005
    assert rand["summary"]["success_rate_3cm"] < 1.0
    assert rand["summary"]["mean_final_distance_m"] > oracle["summary"]["mean_final_distance_m"] + 0.03
    strip = cv2.imread(str(tmp_path / "oracle.png"))
    assert strip is not None and strip.shape[1] > 5 * strip.shape[0], "a wide start | steps | goal strip"


def test_planner_runs_closed_loop_and_stops_on_threshold(sim, random_model):
    wm = load_world_model(random_model)
    cfg = EvalConfig(episodes=1, max_steps=2, samples=12, topk=4, iterations=2)
    res = evaluate(sim, PlannerPolicy(wm, cfg), cfg, None, log=lambda _: None)
    ep = res["episodes"][0]
    assert ep["steps"] == 2 and ep["plan_s_per_step"] > 0
    assert res["summary"]["plan_s_per_step"] == pytest.approx(ep["plan_s_per_step"])
    # a threshold above any possible energy stops before the first move: the arm is left where it started
    stop_cfg = EvalConfig(episodes=1, max_steps=3, samples=12, topk=4, iterations=2, energy_threshold=1e9)
    res = evaluate(sim, PlannerPolicy(wm, stop_cfg), stop_cfg, None, log=lambda _: None)
    ep = res["episodes"][0]
    assert ep["steps"] == 0 and ep["final_distance"] == pytest.approx(ep["start_distance"])


def test_planned_moves_are_shrunk_to_one_step_keeping_direction(sim, random_model):
    np.testing.assert_allclose(scale_to_step(np.array([0.15, -0.03, 0.0]), 0.05), [0.05, -0.01, 0.0])
    np.testing.assert_array_equal(scale_to_step(np.array([0.02, -0.05, 0.01]), 0.05), [0.02, -0.05, 0.01])
    wm = load_world_model(random_model)
    cfg = EvalConfig(samples=12, topk=4, iterations=2, maxnorm=0.15)
    policy = PlannerPolicy(wm, cfg)
    assert policy.planner.config.maxnorm == 0.15
    state = sim.reset(seed=5)
    policy.reset(sim)
    for _ in range(3):
        action, info = policy.act(sim, sim.render(), state)
        assert np.abs(action[:3]).max() <= sim.cfg.max_step + 1e-9
        state = sim.step(action)


def test_planner_holds_when_no_plan_beats_standing_still(sim, random_model):
    wm = load_world_model(random_model)
    cfg = EvalConfig(samples=12, topk=4, iterations=2, hold_margin=1e9)  # nothing beats stillness by 1e9
    policy = PlannerPolicy(wm, cfg)
    state = sim.reset(seed=7)
    policy.reset(sim)
    action, info = policy.act(sim, sim.render(), state)
    assert info["hold"] and np.all(action == 0)
    assert np.isfinite(info["energy_plan"]) and np.isfinite(info["energy_still"])


def test_cli_json_and_errors(tmp_path):
    cmd = [sys.executable, "-m", "vjepa2_ros.sim.evaluate", "--episodes", "2", "--max-steps", "6", "--json"]
    res = subprocess.run(cmd + ["--policies", "oracle,random", "--out", str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert [s["policy"] for s in out["summaries"]] == ["oracle", "random"]
    assert out["summaries"][0]["success_rate_3cm"] == 1.0
    assert (tmp_path / "results.json").is_file() and (tmp_path / "filmstrip_oracle.png").is_file()


def test_cli_errors_are_clear(tmp_path):
    args = ["--episodes", "1", "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="not found"):
        main(args + ["--model", str(tmp_path / "nope.safetensors")])
    with pytest.raises(SystemExit, match="unknown policies"):
        main(args + ["--policies", "telepathy"])
    with pytest.raises(SystemExit, match="must be >= 1"):
        main(["--episodes", "0", "--policies", "oracle"])
