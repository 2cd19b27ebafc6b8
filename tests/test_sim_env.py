"""The simulated Fetch arm: image size, reaction to commands, goal images, exact save/restore, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from vjepa2_ros.sim.env import FetchSim, SimConfig, SimError


@pytest.fixture(scope="module")
def sim():
    s = FetchSim(SimConfig(image_size=48), seed=0)
    yield s
    s.close()


def test_render_size_and_state(sim):
    state = sim.reset(seed=1)
    img = sim.render()
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8
    assert img.std() > 5, "the camera should see the scene, not a flat colour"
    assert state.shape == (7,) and state.dtype == np.float32
    assert np.all(np.abs(state[3:6]) < 0.05), "orientation triple must stay near 0 (no gimbal-lock flips)"
    assert sim.distance_to_goal() >= sim.cfg.min_start_goal_distance


def test_step_moves_end_effector_and_clamps(sim):
    sim.reset(seed=2)
    before = sim.ee_position()
    img_before = sim.render()
    for _ in range(3):
        sim.step(np.array([0.0, 0.0, 0.02, 0, 0, 0, 0]))
    moved = sim.ee_position() - before
    assert 0.04 < moved[2] < 0.07 and np.all(np.abs(moved[:2]) < 0.01)
    assert np.abs(sim.render().astype(int) - img_before).mean() > 0.5, "the image must change when the arm moves"
    start = sim.ee_position()
    sim.step(np.array([0.5, 0, 0, 0, 0, 0, 0]))  # far over the per-step limit
    assert np.linalg.norm(sim.ee_position() - start) < sim.cfg.max_step + 0.01
    for _ in range(20):  # push against the table: the workspace floor holds
        sim.step(np.array([0, 0, -0.05, 0, 0, 0, 0]))
    assert sim.ee_position()[2] > sim.low[2] - 0.01


def test_goal_image_matches_reached_goal_and_restores(sim):
    sim.reset(seed=3)
    state, img = sim.state(), sim.render()
    goal_img, goal_state = sim.goal_image(), sim.goal_state()
    np.testing.assert_array_equal(sim.render(), img)  # restored exactly
    np.testing.assert_allclose(sim.state(), state, atol=1e-6)
    assert np.linalg.norm(goal_state[:3] - sim.goal) < 0.002
    assert np.abs(goal_img.astype(int) - img).mean() > 0.5
    for _ in range(15):  # drive there with delta actions
        sim.step(np.r_[sim.goal - sim.ee_position(), 0, 0, 0, 0])
    assert sim.distance_to_goal() < 0.005
    # posture reset: the arm's posture is a function of the grip position, so the goal image is matched exactly
    assert np.abs(sim.render().astype(int) - goal_img).mean() < 0.05


def test_bad_input_is_a_clear_error(sim):
    with pytest.raises(SimError, match="7 finite"):
        sim.step(np.array([np.nan, 0, 0, 0, 0, 0, 0]))
    with pytest.raises(SimError, match="7 finite"):
        sim.step(np.zeros(4))
    with pytest.raises(SimError, match="outside the workspace"):
        sim.set_goal(np.array([5.0, 0.0, 0.0]))
    with pytest.raises(SimError, match="unknown task"):
        FetchSim(SimConfig(task="juggle"))


def test_push_task_goal_is_an_object_target():
    push = FetchSim(SimConfig(task="push", image_size=32), seed=0)
    try:
        push.reset(seed=4)
        obj = push.block_position()
        assert abs(push.goal[2] - obj[2]) < 1e-6 and push.distance_to_goal() > 0.05
        snap_img = push.render()
        assert push.goal_image().shape == (32, 32, 3)
        np.testing.assert_array_equal(push.render(), snap_img)
    finally:
        push.close()


def test_target_markers_are_hidden(sim):
    sim.reset(seed=5)
    before = sim.render()
    sim.set_goal(sim.home + np.array([0.1, -0.1, 0.05]))  # moves the (hidden) red target site
    np.testing.assert_array_equal(sim.render(), before)
