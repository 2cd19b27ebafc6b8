"""The task registry and the demonstration protocol: a task registered in one place (tests/sim_task_plugin.py) is
usable by collect, eval, the scene probe and the demo; `--subgoals K` gives the planner K + 1 images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vjepa2_core.planning.controller import ControllerConfig, SubgoalSwitch
from vjepa2_ros.sim.env import FetchSim, SimConfig, SimError
from vjepa2_ros.sim.episodes import goal_images
from vjepa2_ros.sim.paths import SHIPPED_PUSH_MODEL
from vjepa2_ros.sim.tasks import SimTask, TaskError, get_task, register, task_names

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from sim_task_plugin import TINY  # noqa: E402  (registers the tiny task)


def plugin_env() -> dict[str, str]:
    """The environment of a process that knows the tiny task (the demo's node processes)."""
    env = os.environ.copy()
    env["VJEPA2_SIM_TASKS"] = "sim_task_plugin"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH", "")]))
    return env


def test_registry_lists_the_tasks_and_refuses_bad_ones():
    assert {"reach", "push", "pick_and_place", TINY.name} <= set(task_names())
    assert get_task("push").success_m == 0.05 and get_task("reach").what == "grip"
    with pytest.raises(TaskError, match="unknown task"):
        get_task("stack")
    with pytest.raises(TaskError, match="already registered"):
        register(get_task("push"))
    bad = {**TINY.__dict__, "name": "bad", "exploration": {"fly": 1.0}}
    with pytest.raises(TaskError, match="exploration"):
        register(SimTask(**bad))
    with pytest.raises(TaskError, match="need a scene of their kind"):
        register(SimTask(**{**bad, "exploration": {"pick": 1.0}}))
    with pytest.raises(SimError, match="unknown task"):
        FetchSim(SimConfig(task="stack"))


def test_the_tiny_task_is_its_own_scene_with_its_exploration_mix(tmp_path):
    from vjepa2_ros.sim.collect import collect

    push, tiny = FetchSim(SimConfig(task="push"), seed=0), FetchSim(SimConfig(task=TINY.name), seed=0)
    try:
        push.reset(seed=1000)
        tiny.reset(seed=1000)
        assert tiny.distance_to_goal() == pytest.approx(push.distance_to_goal())  # the push kind's sampler
        assert tiny.render().shape == (64, 64, 3) and not np.array_equal(tiny.render(), push.render())  # its camera
    finally:
        push.close()
        tiny.close()
    out = tmp_path / "episodes"
    summary = collect(out, 2, steps=3, seed=0, config=SimConfig(task=TINY.name, image_size=32), log=lambda _: None)
    assert summary["sim_config"]["task"] == TINY.name and (out / "trajectories.csv").is_file()
    assert summary["step_length_m"]["p90"] < 1e-3, "hold-only exploration: the arm stays (the task's mix)"
    assert summary["block_moved_2cm_fraction"] == 0.0


def test_the_tiny_task_runs_in_eval_and_the_scene_probe(tmp_path, capsys):
    from vjepa2_ros.sim.evaluate import main
    from vjepa2_ros.sim.scene_probe import ProbeConfig, probe

    torch.set_num_threads(1)
    args = ["--task", TINY.name, "--episodes", "1", "--max-steps", "2", "--json", "--out", str(tmp_path)]
    args += ["--policies", "oracle,planner", "--samples", "8", "--topk", "2", "--iterations", "1", "--threads", "1"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == str(SHIPPED_PUSH_MODEL) and out["config"]["subgoals"] == TINY.subgoals == 1
    oracle, planner = out["summaries"]
    assert oracle["policy"] == "oracle" and oracle["mean_steps"] == planner["mean_steps"] == 2
    assert oracle["mean_moving_steps"] == 2 and oracle["mean_start_distance_m"] == planner["mean_start_distance_m"]
    result = probe(SimConfig(), ProbeConfig(task=TINY.name, seed=1000, episodes=1, steps=2, subgoals=2), log=print)
    ep, summary = result["episodes"][0], result["summary"]
    assert ep["goal_images"] == 3 and ep["steps"] == 2 and summary["policy"] == "energy"
    assert set(summary) >= {"success_rate_3cm", "success_rate_5cm", "mean_final_distance_m", "block_moved_2cm"}


@pytest.mark.parametrize("task", ["push", "pick_and_place", "reach"])
def test_subgoals_k_gives_k_plus_one_images_from_one_demonstration(task):
    sim = FetchSim(SimConfig(task=task, image_size=32), seed=0)
    try:
        sim.reset(seed=1001)
        image, state, goal = sim.render(), sim.state(), sim.goal_image()
        rollout = sim.subgoal_images(every=1)  # the diagnostic: one frame a step of the same demonstration
        for k in (0, 1, 2):
            images = goal_images(sim, subgoals=k)
            assert len(images) == k + 1 and np.array_equal(images[-1], goal)
            for frame in images[:-1]:  # frames of the demonstration itself
                assert any(np.array_equal(frame, r) for r in rollout[:-1]) or task == "reach"
            np.testing.assert_array_equal(sim.render(), image)  # the state is restored
            np.testing.assert_allclose(sim.state(), state, atol=1e-9)
        two = goal_images(sim, subgoals=2)
        assert not np.array_equal(two[0], two[1]), "evenly spaced points of the demonstration differ"
        with pytest.raises(SimError):
            goal_images(sim, subgoals=3)
        with pytest.raises(SimError, match="oracle-every"):
            goal_images(sim, subgoals=1, oracle_every=1)
    finally:
        sim.close()


def test_the_planner_gets_k_plus_one_goals_and_switches_by_the_controllers_rule():
    from vjepa2_ros.sim.evaluate import EvalConfig, PlannerPolicy, load_world_model

    cfg = EvalConfig(task="push", planner_params=str(get_task("push").params))
    sim = FetchSim(SimConfig(task="push"), seed=0)
    try:
        sim.reset(seed=1002)
        for k in (0, 1, 2):
            policy = PlannerPolicy(load_world_model(SHIPPED_PUSH_MODEL), cfg.planning(), subgoals=k)
            policy.reset(sim)
            assert len(policy.controller.goals) == k + 1 and policy.controller.switch.n_goals == k + 1
    finally:
        sim.close()


def test_subgoal_switch_steps_threshold_plateau_and_never_leaves_the_goal():
    switch = SubgoalSwitch(3, ControllerConfig(subgoal_steps=2, subgoal_threshold=0.1))
    energies = {0: 0.5, 1: 0.05, 2: 0.3}
    assert switch.advance(energies.get) == 0.5 and switch.index == 0
    switch.stepped(), switch.stepped()
    assert switch.advance(energies.get) == 0.3 and switch.index == 2  # steps on goal 0, then goal 1's threshold
    assert not switch.plateau() and switch.is_final()
    plateau = SubgoalSwitch(2, ControllerConfig())
    assert plateau.advance(energies.get) == 0.5 and plateau.plateau() and plateau.index == 1
    with pytest.raises(ValueError):
        SubgoalSwitch(0, ControllerConfig())


@pytest.mark.slow  # the two node processes come up and plan 2 steps: 1-3 min on the shared CPU
@pytest.mark.ros
def test_the_demo_runs_the_tiny_task_through_the_nodes(tmp_path):
    cmd = [sys.executable, "-m", "vjepa2_ros.sim.demo", "--task", TINY.name, "--seed", "1000", "--max-steps", "2"]
    res = subprocess.run(cmd + ["--out", str(tmp_path)], capture_output=True, text=True, timeout=900, env=plugin_env())
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    assert "[demo] 1 sub-goal images" in res.stdout, res.stdout  # the task's K = 1: one frame, then the goal
    assert "final distance (block)" in res.stdout and "the 4 cm goal" in res.stdout, res.stdout[-2000:]
    assert "task push_far_view" in (tmp_path / "sim.log").read_text()


def test_a_bad_task_module_is_a_clear_error():
    env = {**os.environ, "VJEPA2_SIM_TASKS": "no_such_task_module"}
    res = subprocess.run(
        [sys.executable, "-c", "import vjepa2_ros.sim.tasks"], capture_output=True, text=True, env=env
    )
    assert res.returncode != 0 and "cannot import task module 'no_such_task_module'" in res.stderr


def test_scene_probe_cli_checks_the_protocol_and_encoder_size(capsys):
    from vjepa2_ros.sim.scene_probe import main

    with pytest.raises(SystemExit) as exc:
        main(["--subgoals", "3"])
    assert exc.value.code == 2 and "--subgoals must be in 0..2" in capsys.readouterr().err
    assert main(["--encoder-size", "60", "--episodes", "1", "--steps", "1"]) == 2  # not a multiple of the 8 px patch
    assert "--encoder-size needs a RoPE encoder and a multiple of its 8 px patch" in capsys.readouterr().err
