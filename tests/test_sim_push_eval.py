"""`vjepa2-sim-eval --task push`: the push params file is the task's default, the baselines bracket the
task, the planner gets the scripted pusher's rollout as sub-goal images, and the shipped push model moves the block
toward its goal in a short closed loop."""

from __future__ import annotations

import json

import pytest
from test_sim_eval import TINY

from vjepa2_core.hub.loading import make_random_checkpoint
from vjepa2_ros.sim.env import FetchSim, SimConfig
from vjepa2_ros.sim.episodes import ORACLE_SUBGOAL_STEPS
from vjepa2_ros.sim.evaluate import (
    EvalConfig,
    OraclePolicy,
    PlannerPolicy,
    RandomPolicy,
    build_parser,
    config_from_args,
    evaluate,
    load_world_model,
    main,
)
from vjepa2_ros.sim.paths import SHIPPED_PUSH_MODEL, SIM_PUSH_PLANNER_PARAMS
from vjepa2_ros.sim.tasks import get_task


@pytest.fixture(scope="module")
def sim():
    s = FetchSim(SimConfig(task="push"), seed=0)
    yield s
    s.close()


def push_cfg(**kw) -> EvalConfig:
    return EvalConfig(task="push", planner_params=str(SIM_PUSH_PLANNER_PARAMS), **kw)


def test_push_settings_pin_the_height_and_take_sub_goals():
    settings = push_cfg().planning()
    # the protocol's rule: the next demonstration frame only at the plateau (subgoal_steps 0, chosen on seeds 500-509)
    assert settings.rules.max_steps == 40 and settings.rules.subgoal_steps == 0 and settings.rules.hold_margin == 0
    assert settings.cem.axis == {"z": 0.0, "gripper": 0.0}
    # the dense-oracle diagnostic keeps its own rule (2 steps on each frame), set in one place; a flag still wins
    oracle = config_from_args(build_parser().parse_args(["--task", "push", "--oracle-every", "1"]))
    assert oracle.subgoals == 0 and oracle.planning().rules.subgoal_steps == ORACLE_SUBGOAL_STEPS == 2
    flagged = build_parser().parse_args(["--task", "push", "--oracle-every", "1", "--subgoal-steps", "3"])
    assert config_from_args(flagged).planning().rules.subgoal_steps == 3


def test_push_baselines_bracket_the_task(sim):
    cfg = push_cfg(episodes=2, max_steps=20, seed=510)
    oracle = evaluate(sim, OraclePolicy(), cfg, None, log=lambda _: None)
    rand = evaluate(sim, RandomPolicy(0), cfg, None, log=lambda _: None)
    assert oracle["summary"]["success_rate_5cm"] == 1.0 and oracle["summary"]["success_rate_3cm"] == 1.0
    assert rand["summary"]["success_rate_5cm"] == 0.0
    assert rand["summary"]["mean_final_distance_m"] > oracle["summary"]["mean_final_distance_m"] + 0.04


def test_planner_gets_the_pushers_rollout_as_sub_goals(sim, tmp_path):
    wm = load_world_model(make_random_checkpoint(tmp_path / "tiny.safetensors", "vit_ac_tiny", seed=0))
    cfg = push_cfg(episodes=1, max_steps=2, seed=511, planner_overrides=TINY)
    policy = PlannerPolicy(wm, cfg.planning(), oracle_every=1)
    sim.reset(seed=511)
    policy.reset(sim)
    assert len(policy.controller.goals) == len(sim.subgoal_images(every=1)) >= 3
    res = evaluate(sim, policy, cfg, None, log=lambda _: None)
    assert res["episodes"][0]["steps"] == 2
    z = [sim.table_top + sim.block_half]
    assert abs(sim.ee_position()[2] - z[0]) < 0.003, "the planner's moves stay planar"


def test_cli_push_defaults_to_the_push_params(tmp_path, capsys):
    args = ["--task", "push", "--episodes", "1", "--max-steps", "3", "--policies", "oracle", "--json"]
    assert main(args + ["--out", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["planner_params"] == str(SIM_PUSH_PLANNER_PARAMS) and out["config"]["max_steps"] == 3
    assert "success_rate_5cm" in out["summaries"][0]


def test_push_params_file_lists_only_known_parameters_that_differ_from_the_defaults():
    from test_ros_launch import test_params_files_list_only_known_parameters_that_differ_from_the_defaults as check

    check(SIM_PUSH_PLANNER_PARAMS.name)


@pytest.mark.slow  # 12 planned steps: about 20 s on the shared CPU (load 3-4)
def test_shipped_push_model_moves_the_block_toward_its_goal_from_the_goal_and_two_frames():
    """The demonstration protocol with the shipped model and params: the goal image plus K = 2 frames of one
    scripted demonstration (the task's default), the plateau rule; a short closed loop on seed 500 (tuning set,
    9.6 cm from its goal; traced: the arm reaches the first frame in 3 steps, the second in 7, and the block is
    within 1 cm of its goal after 9) moves the block toward its goal."""
    late = {"safety.plan_deadline": 600.0}  # a loaded machine's slow plan is not this test's subject
    cfg = push_cfg(episodes=1, max_steps=12, seed=500, subgoals=get_task("push").subgoals, planner_overrides=late)
    policy = PlannerPolicy(load_world_model(SHIPPED_PUSH_MODEL), cfg.planning(), seed=500, subgoals=cfg.subgoals)
    fresh = FetchSim(SimConfig(task="push"), seed=0)
    try:
        ep = evaluate(fresh, policy, cfg, None, log=lambda _: None)["episodes"][0]
    finally:
        fresh.close()
    assert cfg.subgoals == 2 and len(policy.controller.goals) == 3
    assert ep["final_distance"] < ep["start_distance"] - 0.03 and ep["block_moved"] > 0.03, ep
