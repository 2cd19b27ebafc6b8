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
)

TINY = {"cem.samples": 12, "cem.topk": 4, "cem.iterations": 2}


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
    cfg = EvalConfig(episodes=1, max_steps=2, planner_overrides=TINY)
    res = evaluate(sim, PlannerPolicy(wm, cfg.planning()), cfg, None, log=lambda _: None)
    ep = res["episodes"][0]
    assert ep["steps"] == 2 and ep["plan_s_per_step"] > 0
    assert res["summary"]["plan_s_per_step"] == pytest.approx(ep["plan_s_per_step"])
    # a threshold above any possible energy stops before the first move: the arm is left where it started
    stop_cfg = EvalConfig(episodes=1, max_steps=3, planner_overrides={**TINY, "energy_threshold": 1e9})
    res = evaluate(sim, PlannerPolicy(wm, stop_cfg.planning()), stop_cfg, None, log=lambda _: None)
    ep = res["episodes"][0]
    assert ep["steps"] == 0 and ep["final_distance"] == pytest.approx(ep["start_distance"])


def test_planned_moves_become_one_safe_step_inside_the_box(sim, random_model):
    wm = load_world_model(random_model)
    cfg = EvalConfig(planner_overrides=TINY)
    settings = cfg.planning()
    assert settings.cem.maxnorm == 0.15 and settings.limits.max_translation == 0.05  # the sim params file
    assert settings.cem.workspace == (settings.limits.workspace_min, settings.limits.workspace_max)
    policy = PlannerPolicy(wm, settings)
    state = sim.reset(seed=5)
    policy.reset(sim)
    lo, hi = np.array(settings.limits.workspace_min), np.array(settings.limits.workspace_max)
    for _ in range(3):
        action, info = policy.act(sim, sim.render(), state)
        assert np.linalg.norm(action[:3]) <= settings.limits.max_translation + 1e-9
        assert np.all(state[:3] + action[:3] >= lo - 1e-9) and np.all(state[:3] + action[:3] <= hi + 1e-9)
        state = sim.step(action)


def test_eval_settings_are_the_node_params_file_plus_overrides(tmp_path):
    cfg = EvalConfig(planner_overrides={"cem.samples": 50})
    s = cfg.planning()
    assert s.cem.samples == 50 and s.cem.horizon == 1 and s.rules.hold_margin == 0.0 and cfg.steps() == 20
    with pytest.raises(ValueError, match="unknown planner setting"):
        EvalConfig(planner_overrides={"cem.sampels": 50}).planning()


def test_planner_holds_when_no_plan_beats_standing_still(sim, random_model):
    wm = load_world_model(random_model)
    cfg = EvalConfig(planner_overrides={**TINY, "hold_margin": 1e9})  # nothing beats stillness by 1e9
    policy = PlannerPolicy(wm, cfg.planning())
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


def test_cli_errors_are_clear(tmp_path, capsys):
    args = ["--episodes", "1", "--out", str(tmp_path)]
    for bad, match in [
        (["--model", str(tmp_path / "nope.safetensors")], "not found"),
        (["--policies", "telepathy"], "unknown policies"),
        (["--policies", "oracle", "--set", "cem.samples"], "NAME=VALUE"),
        (["--samples", "1"], "topk"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(args + bad)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and "vjepa2-sim-eval: error:" in err and match in err, err
    with pytest.raises(SystemExit) as exit_info:
        main(["--episodes", "0", "--policies", "oracle"])
    assert exit_info.value.code == 2 and "must be >= 1" in capsys.readouterr().err


@pytest.mark.slow
def test_via_ros_runs_the_same_episodes_through_the_nodes(tmp_path):
    """--via-ros: the real sim and planner nodes over DDS run the in-process episode of the same seed."""
    common = ["--episodes", "1", "--max-steps", "2", "--policies", "planner", "--samples", "16", "--topk", "4"]
    common += ["--iterations", "2", "--seed", "1000", "--json"]
    runs = {}
    for name, extra in (("planner", []), ("planner_ros", ["--via-ros"])):
        out = tmp_path / name
        res = subprocess.run(
            [sys.executable, "-m", "vjepa2_ros.sim.evaluate", *common, *extra, "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        runs[name] = json.loads((out / "results.json").read_text())["policies"][name]["episodes"][0]
    local, ros = runs["planner"], runs["planner_ros"]
    assert ros["seed"] == local["seed"] == 1000
    assert ros["start_distance"] == pytest.approx(local["start_distance"], abs=2e-3), "same start and goal"
    assert ros["steps"] == 2 and ros["moving_steps"] >= 1
    assert ros["final_distance"] != pytest.approx(ros["start_distance"], abs=1e-3), "the arm moved"
