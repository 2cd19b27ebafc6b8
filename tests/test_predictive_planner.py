"""Predictive sampling, the planner added in one file plus one registry line, on the toy world model."""

from __future__ import annotations

import pytest
import torch

from vjepa2_core.planning import PLANNERS, CEMConfig, make_planner
from vjepa2_core.planning.poses import compose_pose
from vjepa2_core.planning.predictive import PredictiveSamplingPlanner
from vjepa2_core.planning.toy import ToyWorldModel

START = torch.tensor([0.4, 0.0, 0.3, 0.0, 0.0, 0.0, 0.0])


@pytest.fixture(scope="module")
def toy() -> ToyWorldModel:
    return ToyWorldModel(num_tokens=16, embed_dim=8, seed=0)


def test_it_is_registered_under_its_name():
    assert PLANNERS["predictive"] is PredictiveSamplingPlanner


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reaches_a_two_step_goal_and_never_raises_its_best_energy(toy, seed):
    delta = torch.tensor([0.08, 0.02, -0.03, 0.0, 0.0, 0.0, 0.0])  # beyond one step at maxnorm 5 cm
    goal = toy.encode_state(compose_pose(START, delta))
    cfg = CEMConfig(planner="predictive", horizon=2, samples=200, iterations=20)
    result = make_planner(toy, cfg).plan(toy.encode_state(START), START, goal, seed=seed)
    zero = torch.zeros(1, 2, 7)
    standing_still = (toy.rollout(toy.encode_state(START)[None], START[None], zero)[0][0, -1] - goal).abs().mean()
    assert result.energy < 0.01 * float(standing_still), (result.energy, float(standing_still))
    torch.testing.assert_close(result.predicted_states[-1, :3], START[:3] + delta[:3], atol=2e-3, rtol=0)
    history = result.energy_history
    assert len(history) == 20 and all(b <= a for a, b in zip(history, history[1:])), history
    assert result.actions[:, :3].abs().max() <= cfg.maxnorm + 1e-7
    assert result.samples_evaluated == 20 * 200


def test_a_warm_start_is_kept_when_nothing_beats_it(toy):
    goal = toy.encode_state(compose_pose(START, torch.tensor([0.03, 0.0, 0.0, 0, 0, 0, 0])))
    planner = make_planner(toy, CEMConfig(planner="predictive", horizon=2, samples=8, topk=2, iterations=1))
    exact = torch.tensor([[0.0] * 7, [0.03, 0, 0, 0, 0, 0, 0], [0.0] * 7])  # shifted: [[0.03, 0...], [0...]]
    result = planner.plan(toy.encode_state(START), START, goal, seed=0, warm_start=exact)
    assert result.energy_history[0] <= 1e-6 and torch.equal(result.actions, exact[1:])
