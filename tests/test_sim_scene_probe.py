"""The true-simulator push probe: its candidate set, exact state restore between candidates, an energy that sees
the block, and its baselines (the scripted pusher succeeds where random moves do not)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from vjepa2_ros.sim.env import FetchSim, SimConfig
from vjepa2_ros.sim.paths import SHIPPED_MODEL
from vjepa2_ros.sim.scene_probe import EnergyScorer, ProbeConfig, candidate_moves, energy_split, outcome_images, probe


def test_candidate_moves_hold_first_all_distinct_within_one_step():
    moves = candidate_moves(0.05)
    assert moves.shape == (37, 7) and np.all(moves[0] == 0) and np.all(moves[:, 3:] == 0)
    assert len(np.unique(moves.round(6), axis=0)) == 37
    norms = np.linalg.norm(moves[1:, :3], axis=1)
    assert norms.max() == pytest.approx(0.05) and norms.min() == pytest.approx(0.02)
    planar = candidate_moves(0.05, planar=True)  # the planar pusher: flat moves only
    assert planar.shape == (33, 7) and np.all(planar[:, 2:] == 0) and np.all(planar[0] == 0)
    assert len(np.unique(planar.round(6), axis=0)) == 33


def test_outcomes_restore_the_state_and_the_energy_sees_the_block():
    torch.set_num_threads(1)
    sim = FetchSim(SimConfig(task="push"), seed=0)
    try:
        sim.reset(seed=501)
        image, state = sim.render(), sim.state()
        outcomes = outcome_images(sim, candidate_moves(sim.cfg.max_step)[:5])
        np.testing.assert_array_equal(sim.render(), image)
        np.testing.assert_allclose(sim.state(), state, atol=1e-9)
        change = [np.abs(o.astype(int) - image).mean() for o in outcomes]
        assert change[0] < 0.5 < 2.0 < min(change[1:]), f"hold ~ the current image, moves change it: {change}"
        scorer = EnergyScorer(str(SHIPPED_MODEL))
        split = energy_split(sim, scorer, sim.goal_image())
        # both the arm and the block at their goal lower the energy: the goal image says where the block must go
        assert split["arm_at_goal"] < split["now"] and split["block_at_goal"] < split["now"], split
    finally:
        sim.close()


@pytest.mark.slow  # about 25 s on the shared CPU
def test_scripted_pusher_beats_random_moves_on_the_probe_seeds():
    log = lambda _: None  # noqa: E731
    oracle = probe(SimConfig(), ProbeConfig(seed=500, episodes=3, policy="oracle"), log=log)["summary"]
    rand = probe(SimConfig(), ProbeConfig(seed=500, episodes=3, policy="random"), log=log)["summary"]
    assert oracle["success_rate_5cm"] == 1.0 and oracle["block_moved_2cm"] == 1.0, oracle
    assert rand["mean_final_distance_m"] > oracle["mean_final_distance_m"] + 0.03, (rand, oracle)


def test_cli_rejects_bad_arguments():
    cmd = [sys.executable, "-m", "vjepa2_ros.sim.scene_probe"]
    res = subprocess.run(cmd + ["--episodes", "0"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "error: --episodes" in res.stderr
    res = subprocess.run(cmd + ["--scene", '{"colour": 1}'], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "--scene" in res.stderr and "Traceback" not in res.stderr
