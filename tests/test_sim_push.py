"""The push scene: the block is seen, the goal image shows it at its goal without pushing it there, the arm reacts
to commands, and the scripted pusher moves the block to its goal (the baseline the probe and planners compare to)."""

from __future__ import annotations

import numpy as np
import pytest

from vjepa2_ros.sim.env import FetchSim, SimConfig, SimError, scripted_push_action


@pytest.fixture(scope="module")
def sim():
    s = FetchSim(SimConfig(task="push"), seed=0)
    yield s
    s.close()


def block_pixels(sim: FetchSim) -> int:
    """Pixels that change when the block is taken off the table (what the camera sees of it)."""
    snap, with_block = sim.get_snapshot(), sim.render().astype(int)
    sim.place_block(np.array([0.3, 2.5, sim.block_half]))
    without = sim.render().astype(int)
    sim.set_snapshot(snap)
    return int((np.abs(with_block - without).sum(-1) > 40).sum())


def touching(sim: FetchSim) -> bool:
    """Does any robot geom touch the block (contacts of the current state)?"""
    block = sim.model.geom("object0").id
    for c in sim.data.contact[: sim.data.ncon]:
        other = c.geom2 if c.geom1 == block else c.geom1 if c.geom2 == block else None
        if other is not None and sim.model.body(sim.model.geom_bodyid[other]).name.startswith("robot0:"):
            return True
    return False


def test_reset_places_the_block_upright_on_the_table_clear_of_the_arm(sim):
    for seed in (500, 501, 502):
        sim.reset(seed=seed)
        block = sim.block_position()
        assert abs(block[2] - (sim.table_top + sim.block_half)) < 0.002, "the block rests on the table"
        assert np.linalg.norm(sim.ee_position()[:2] - block[:2]) > sim.block_half + 0.07, "the arm starts clear"
        assert 0.06 <= sim.block_distance_to_goal() <= np.sqrt(2) * sim.cfg.object_goal_range + 1e-6
        assert sim.on_table_xy(sim.goal)


def test_the_camera_sees_the_block_at_most_starts_and_goals(sim):
    """More than a patch-sized speck (the first view: ~9 px) where the arm does not hide it. The arm does hide it
    at some starts and goals (pushes toward the robot reach over the block; seeds 500-509: 3 starts, 1 goal)."""
    start_px, goal_px = [], []
    for seed in range(500, 510):
        sim.reset(seed=seed)
        start_px.append(block_pixels(sim))
        goal_px.append(sim._with_goal_scene(lambda: block_pixels(sim)))
    assert np.median(start_px) >= 60 and np.median(goal_px) >= 40, (start_px, goal_px)
    assert sum(p >= 20 for p in start_px) >= 7 and sum(p >= 20 for p in goal_px) >= 8, (start_px, goal_px)


def test_goal_image_shows_the_block_at_its_goal_and_restores_the_scene(sim):
    sim.reset(seed=503)
    state, image, block = sim.state(), sim.render(), sim.block_position()
    seen = sim._with_goal_scene(lambda: (sim.block_position(), sim.ee_position(), block_pixels(sim), touching(sim)))
    goal_block, goal_ee, pixels, touches = seen
    assert np.linalg.norm(goal_block - sim.goal) < 1e-6, "the goal scene must not push the block off its goal"
    assert np.linalg.norm(goal_ee - sim.goal_ee) < 0.003
    behind = (goal_ee[:2] - sim.goal[:2]) @ sim.push_dir
    assert behind < -sim.block_half and not touches, "the grip rests behind the block, clear of it"
    assert pixels >= 20, f"the block must be visible in the goal image ({pixels} px)"
    goal_img = sim.goal_image()
    assert np.abs(goal_img.astype(int) - image).mean() > 0.5
    np.testing.assert_array_equal(sim.render(), image)  # restored exactly
    np.testing.assert_allclose(sim.state(), state, atol=1e-6)
    np.testing.assert_allclose(sim.block_position(), block, atol=1e-9)
    subgoals = sim.subgoal_images()  # planar pusher: the pose behind the block, then the goal
    assert len(subgoals) == 2 and np.array_equal(subgoals[-1], goal_img)
    np.testing.assert_array_equal(sim.render(), image)
    rollout = sim.subgoal_images(every=4)  # frames of the scripted pusher's rollout, then the goal image
    assert len(rollout) >= 2 and np.array_equal(rollout[-1], goal_img)
    assert all(np.abs(f.astype(int) - image).mean() > 0.3 for f in rollout[:-1]), "each sub-goal shows progress"
    np.testing.assert_array_equal(sim.render(), image)
    np.testing.assert_allclose(sim.block_position(), block, atol=1e-9)


def test_push_arm_reacts_to_commands_and_the_block_moves_only_when_touched(sim):
    sim.reset(seed=504)
    block, ee, img = sim.block_position(), sim.ee_position(), sim.render()
    away = np.r_[np.sign(ee[:2] - block[:2]) * 0.02, 0.0, 0, 0, 0, 0]  # move away from the block
    for _ in range(3):
        sim.step(away)
    assert np.linalg.norm(sim.ee_position()[:2] - ee[:2]) > 0.04
    assert np.abs(sim.render().astype(int) - img).mean() > 0.3
    np.testing.assert_allclose(sim.block_position(), block, atol=2e-3)  # untouched, it stays


@pytest.mark.parametrize("seed", [505, 506])
def test_scripted_pusher_moves_the_block_to_its_goal(sim, seed):
    sim.reset(seed=seed)
    start, distances = sim.block_distance_to_goal(), []
    for _ in range(40):
        sim.step(scripted_push_action(sim))
        distances.append(sim.block_distance_to_goal())
    assert distances[-1] < 0.03 < start, f"block {start:.3f} -> {distances[-1]:.3f} m from its goal"
    assert abs(sim.block_position()[2] - (sim.table_top + sim.block_half)) < 0.005, "pushed, not lifted or tipped"


def test_push_bad_input_is_a_clear_error():
    with pytest.raises(SimError, match="block_half_size"):
        FetchSim(SimConfig(task="push", block_half_size=0.2))
    reach = FetchSim(SimConfig(task="reach", image_size=32))
    try:
        with pytest.raises(SimError, match="no block"):
            reach.block_position()
        reach.reset(seed=0)
        with pytest.raises(SimError, match="push task"):
            scripted_push_action(reach)
    finally:
        reach.close()


def test_bigger_block_is_resized_in_collision_too():
    big = FetchSim(SimConfig(task="push", block_half_size=0.04), seed=0)
    try:
        big.reset(seed=507)
        assert abs(big.block_position()[2] - (big.table_top + 0.04)) < 0.002
        for _ in range(5):  # it rests on the table at its new size: neither sinks nor jumps
            big.step(np.zeros(7))
        assert abs(big.block_position()[2] - (big.table_top + 0.04)) < 0.002
    finally:
        big.close()


def test_planar_pusher_holds_its_height_and_stays_in_the_cameras_workspace(sim):
    sim.reset(seed=508)
    z = sim.table_top + sim.block_half
    assert sim.low[2] == sim.high[2] == pytest.approx(z) and abs(sim.ee_position()[2] - z) < 0.003
    np.testing.assert_allclose(sim.high[:2] - sim.low[:2], 2 * np.asarray(sim.cfg.push_workspace_xy))
    for action in ([0, 0, 0.05, 0, 0, 0, 0], [-0.05, -0.05, 0, 0, 0, 0, 0]):
        for _ in range(6):
            sim.step(np.array(action, dtype=float))
        assert abs(sim.ee_position()[2] - z) < 0.003, "a command up or down leaves the grip at the push height"
    assert np.all(sim.ee_position()[:2] >= sim.low[:2] - 0.003), "the grip stops at the workspace edge"
    red = sim.render().astype(int)
    assert ((red[..., 0] > 150) & (red[..., 1] < 90)).sum() >= 10, "the red block stands out in the image"


def test_scripted_pusher_goes_round_a_block_in_its_way():
    """The grip starts on the goal side of the block, in line: the pusher must walk round it (a planar pusher
    cannot go over), not push it away from its goal."""
    s = FetchSim(SimConfig(task="push"), seed=0)
    try:
        s.reset(seed=509)
        block = s.block_position()
        d = (s.goal[:2] - block[:2]) / np.linalg.norm(s.goal[:2] - block[:2])
        s.place_block(np.array([0.3, 2.5, s.block_half]))  # out of the way while the arm is placed
        s.teleport(np.r_[block[:2] + d * (s.block_half + 0.05), s.ee_position()[2]])
        s.place_block(block)
        start, worst = s.block_distance_to_goal(), 0.0
        for _ in range(40):
            s.step(scripted_push_action(s))
            worst = max(worst, s.block_distance_to_goal())
        assert s.block_distance_to_goal() < 0.03, f"{start:.3f} -> {s.block_distance_to_goal():.3f} m"
        assert worst < start + 0.02, f"the block was pushed away first (up to {worst:.3f} m from its goal)"
    finally:
        s.close()
