"""The pick-and-place scene: the arm and the gripper obey commands, a closed gripper lifts the block, the scripted
picker places it at goals on the table and in the air, and the sub-goal images end with the goal image and leave
the scene exactly as it was."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vjepa2_ros.sim.env import GRASP_OFFSET, FetchSim, SimConfig, SimError, is_holding, scripted_pick_action


@pytest.fixture(scope="module")
def sim():
    s = FetchSim(SimConfig(task="pick_and_place"), seed=0)
    yield s
    s.close()


def grip_at(sim: FetchSim, target: np.ndarray, steps: int = 6) -> None:
    for _ in range(steps):
        action = np.zeros(7)
        action[:3] = np.clip(target - sim.ee_position(), -0.05, 0.05)
        sim.step(action)


def test_reset_starts_open_beside_the_block_with_a_goal_on_or_above_the_table(sim):
    heights = []
    for seed in (500, 501, 502, 503):
        sim.reset(seed=seed)
        block = sim.block_position()
        assert abs(block[2] - (sim.table_top + sim.block_half)) < 0.002, "the block rests on the table"
        assert sim.gripper_closedness() < 0.05, "the gripper starts open"
        assert np.linalg.norm(sim.ee_position()[:2] - block[:2]) > sim.block_half + 0.07, "the arm starts clear"
        assert np.linalg.norm(sim.goal[:2] - block[:2]) >= sim.cfg.min_start_goal_distance
        heights.append(sim.goal[2] - block[2])
        assert sim.distance_to_goal() == pytest.approx(float(np.linalg.norm(block - sim.goal)))
    assert min(heights) >= 0.0 and max(heights) <= 0.15 and max(heights) > 0.03, heights


def test_the_arm_and_the_gripper_follow_commands(sim):
    sim.reset(seed=504)
    start = sim.ee_position()
    state = sim.step(np.array([0.03, -0.02, 0.02, 0, 0, 0, 0]))
    np.testing.assert_allclose(state[:3] - start, [0.03, -0.02, 0.02], atol=0.002)
    assert state[6] < 0.05
    state = sim.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))  # +1 closes the empty gripper in one step
    assert state[6] > 0.9
    state = sim.step(np.array([0, 0, 0, 0, 0, 0, -1.0]))
    assert state[6] < 0.05


def test_the_closed_gripper_holds_the_block_and_lifts_it_5cm(sim):
    sim.reset(seed=505)
    block = sim.block_position()
    grip_at(sim, block + [0, 0, 0.08])
    grip_at(sim, block - GRASP_OFFSET, steps=3)
    assert not is_holding(sim)
    sim.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
    assert is_holding(sim), "the fingers stop on the block's faces"
    for _ in range(2):
        sim.step(np.array([0, 0, 0.025, 0, 0, 0, 0]))
    lifted = sim.block_position()
    assert lifted[2] - block[2] == pytest.approx(0.05, abs=0.005), "the block rises with the grip"
    sim.step(np.array([0, 0, 0, 0, 0, 0, -1.0]))  # open: the block falls back to the table
    for _ in range(3):
        sim.step(np.zeros(7))
    assert abs(sim.block_position()[2] - block[2]) < 0.005


def test_the_lift_changes_the_image_clearly(sim):
    """The camera shows height: 5 cm up, the held block and the arm change hundreds of the 64 x 64 pixels."""
    sim.reset(seed=506)
    block = sim.block_position()
    low = sim.scene_image(block - GRASP_OFFSET, block, grasp=True).astype(int)
    high = sim.scene_image(block - GRASP_OFFSET + [0, 0, 0.05], block + [0, 0, 0.05], grasp=True).astype(int)
    assert int((np.abs(low - high).sum(-1) > 40).sum()) > 200


@pytest.mark.parametrize("seed", [510, 511, 512])
def test_the_scripted_picker_places_the_block_within_5cm(sim, seed):
    sim.reset(seed=seed)
    start = sim.distance_to_goal()
    for _ in range(20):
        sim.step(scripted_pick_action(sim))
    assert start > 0.05 and sim.distance_to_goal() < 0.05, (start, sim.distance_to_goal())
    assert is_holding(sim)


def test_subgoal_images_end_with_the_goal_image_and_restore_the_state(sim):
    sim.reset(seed=507)
    snap, before = sim.get_snapshot(), sim.render()
    poses = sim.subgoal_images()
    assert len(poses) == 3
    dense = sim.subgoal_images(every=2)
    goal = sim.goal_image()
    np.testing.assert_array_equal(poses[-1], goal)
    np.testing.assert_array_equal(dense[-1], goal)
    assert len(dense) >= 4, "the picker's rollout gives frames before the goal image"
    np.testing.assert_array_equal(sim.get_snapshot(), snap)
    np.testing.assert_array_equal(sim.render(), before)
    assert sim.gripper_closedness() < 0.05 and sim._grip_cmd == 0.0, "the gripper command is restored too"
    approach, grasp = poses[0].astype(int), poses[1].astype(int)
    assert np.abs(approach - grasp).mean() > 1.0, "approach and grasp images differ"


def test_the_goal_scene_holds_the_block_at_its_goal(sim):
    sim.reset(seed=508)
    scene = sim._with_goal_scene(lambda: (sim.block_position(), sim.ee_position(), sim.gripper_closedness()))
    block, ee, closed = scene
    np.testing.assert_allclose(block, sim.goal, atol=1e-6)
    np.testing.assert_allclose(ee + GRASP_OFFSET, sim.goal, atol=0.002)
    assert 0.2 < closed < 0.5, "the fingers rest on the block's faces (a 7 cm block in a 10 cm gripper)"


def test_the_scripted_picker_refuses_other_tasks():
    s = FetchSim(SimConfig(task="reach"), seed=0)
    try:
        s.reset(seed=0)
        with pytest.raises(SimError):
            scripted_pick_action(s)
    finally:
        s.close()


def test_collection_grasps_and_carries_the_block(sim, tmp_path):
    """Exploration data that manipulates: the noisy picker lifts the block in the episodes, and the loader reads
    the gripper as part of the state and the action."""
    from vjepa2_core.data.droid import DROIDDataset
    from vjepa2_ros.sim.collect import collect

    cfg = SimConfig(task="pick_and_place", image_size=32)
    summary = collect(tmp_path, episodes=3, steps=24, seed=0, config=cfg, log=lambda _: None)
    assert summary["block_moved_2cm_fraction"] >= 2 / 3, summary
    ds = DROIDDataset(tmp_path / "trajectories.csv", frames_per_clip=24, fps=4, crop_size=32)
    grip = np.concatenate([ds[i]["states"][:, 6].numpy() for i in range(3)])
    assert grip.min() < 0.05 and grip.max() > 0.25, "the episodes open and close the gripper"
    lifts = [np.max(np.array(m["block_position"])[:, 2]) for m in _episode_metadata(tmp_path)]
    assert max(lifts) > sim.table_top + sim.block_half + 0.03, f"some episode lifts the block: {lifts}"
    assert json.loads((tmp_path / "collection.json").read_text())["sim_config"]["task"] == "pick_and_place"


def _episode_metadata(root) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("metadata*.json"))]


def test_eval_baselines_bracket_the_task(sim, tmp_path, capsys):
    from vjepa2_ros.sim.evaluate import main

    args = ["--task", "pick_and_place", "--episodes", "2", "--max-steps", "20", "--seed", "510"]
    assert main(args + ["--policies", "random,oracle", "--json", "--out", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    rand, oracle = out["summaries"]
    assert out["config"]["planner_params"].endswith("sim_pick_planner.yaml")
    assert oracle["success_rate_5cm"] == 1.0 and rand["success_rate_5cm"] == 0.0, out["summaries"]


def test_pick_params_file_lists_only_known_parameters_that_differ_from_the_defaults():
    from test_ros_launch import test_params_files_list_only_known_parameters_that_differ_from_the_defaults as check

    from vjepa2_ros.sim.paths import SIM_PICK_PLANNER_PARAMS

    check(SIM_PICK_PLANNER_PARAMS.name)


@pytest.mark.slow  # about 40 s on a quiet 2-core CPU (290 s at load 15-20)
def test_shipped_pick_model_moves_the_block_toward_its_goal(tmp_path):
    """A short closed loop of the shipped model through the node's controller with the task's params and the
    demonstration protocol (goal + 2 demonstration frames, switched at the plateau): on tuning seed 502 of the card
    (14.9 cm from its goal; 1.6 cm after the card's 40 steps) the block is moved toward its goal within 20 steps
    (measured: moved 4.0 cm, 2.6 cm closer; random actions: 13.4 -> 13.7 cm on average, seeds 2000-2019)."""
    from vjepa2_ros.sim.evaluate import EvalConfig, run_policies
    from vjepa2_ros.sim.paths import SHIPPED_PICK_MODEL, SIM_PICK_PLANNER_PARAMS

    cfg = EvalConfig(task="pick_and_place", planner_params=str(SIM_PICK_PLANNER_PARAMS), episodes=1, max_steps=20,
                     seed=502, subgoals=2)  # fmt: skip
    results = run_policies(cfg, ["planner"], str(SHIPPED_PICK_MODEL), tmp_path, via_ros=False, log=lambda _: None)
    ep = results["policies"]["planner"]["episodes"][0]
    assert ep["block_moved"] > 0.02 and ep["final_distance"] < ep["start_distance"] - 0.015, ep
