"""CEM planner on the toy world model, whose optimum is known in closed form."""

from __future__ import annotations

import json

import pytest
import torch

from vjepa2_core.planning.cem import CEMConfig, CEMPlanner, PlanResult, shift_plan
from vjepa2_core.planning.energies import cosine_energy, l1_energy, l2_energy, trajectory_energy
from vjepa2_core.planning.poses import compose_pose
from vjepa2_core.planning.toy import ToyWorldModel

START = torch.tensor([0.4, 0.0, 0.3, 0.0, 0.0, 0.0, 0.2])


@pytest.fixture(scope="module")
def toy() -> ToyWorldModel:
    return ToyWorldModel(num_tokens=16, embed_dim=8, seed=0)


def goal_after(toy: ToyWorldModel, delta: list[float]) -> torch.Tensor:
    return toy.encode_state(compose_pose(START, torch.tensor(delta)))


def test_reference_defaults_recover_one_step_optimum(toy):
    delta = [0.03, -0.02, 0.01, 0.0, 0.0, 0.0, 0.3]
    result = CEMPlanner(toy, CEMConfig(horizon=1)).plan(toy.encode_state(START), START, goal_after(toy, delta), seed=0)
    assert result.actions.shape == (1, 7)
    # xyz within 2 mm, gripper within 0.02, rotations exactly zero (reference samples none)
    torch.testing.assert_close(result.first_action[:3], torch.tensor(delta[:3]), atol=2e-3, rtol=0)
    assert abs(result.first_action[6].item() - 0.3) < 0.02
    assert torch.equal(result.first_action[3:6], torch.zeros(3))
    assert result.energy < 0.01 * toy.weight.abs().mean().item()


def test_two_step_plan_reaches_goal_beyond_one_step(toy):
    # 8 cm in x needs two steps at maxnorm 5 cm; the last predicted pose must land on the goal.
    delta = [0.08, 0.02, -0.03, 0.0, 0.0, 0.0, 0.0]
    cfg = CEMConfig(horizon=2, iterations=20)
    result = CEMPlanner(toy, cfg).plan(toy.encode_state(START), START, goal_after(toy, delta), seed=1)
    final = result.predicted_states[-1]
    torch.testing.assert_close(final[:3], START[:3] + torch.tensor(delta[:3]), atol=4e-3, rtol=0)
    assert result.actions[:, :3].abs().max() <= cfg.maxnorm + 1e-7


def test_same_seed_same_plan_different_seed_different_samples(toy):
    planner = CEMPlanner(toy, CEMConfig(horizon=2, samples=50, iterations=3))
    goal = goal_after(toy, [0.02, 0.02, 0.0, 0, 0, 0, 0])
    a = planner.plan(toy.encode_state(START), START, goal, seed=7)
    b = planner.plan(toy.encode_state(START), START, goal, seed=7)
    c = planner.plan(toy.encode_state(START), START, goal, seed=8)
    assert torch.equal(a.actions, b.actions) and a.energy_history == b.energy_history
    assert not torch.equal(a.actions, c.actions)
    assert a.seed == 7


def test_every_bound_is_respected(toy):
    cfg = CEMConfig(
        horizon=4,
        samples=64,
        iterations=4,
        maxnorm=0.03,
        rotation=True,
        rot_maxnorm=0.05,
        axis={"y": 0.01, 2: 0.0},
        close_gripper=2,
        workspace=((0.35, -0.1, 0.2), (0.45, 0.1, 0.4)),
    )
    # the goal lies far outside the workspace in +x: the plan must stop at the wall
    result = CEMPlanner(toy, cfg).plan(
        toy.encode_state(START), START, goal_after(toy, [0.3, 0, 0, 0, 0, 0, 0]), seed=0
    )
    a = result.actions
    assert a[:, :3].abs().max() <= cfg.maxnorm + 1e-7
    assert a[:, 3:6].abs().max() <= cfg.rot_maxnorm + 1e-7
    assert torch.all(a[:, 1] == 0.01) and torch.all(a[:, 2] == 0.0)
    assert torch.all(a[2:, 6] == 1.0)
    xyz = result.predicted_states[:, :3]
    assert torch.all(xyz >= torch.tensor([0.35, -0.1, 0.2]) - 1e-6) and torch.all(
        xyz <= torch.tensor([0.45, 0.1, 0.4]) + 1e-6
    )
    assert xyz[-1, 0] > 0.44  # pushed against the wall
    assert torch.all(result.predicted_states[:, 6].clamp(0, 1) == result.predicted_states[:, 6])


def test_gripper_rounding_and_clip(toy):
    # goal needs no gripper change: the small residual gripper mean is rounded to exactly zero
    result = CEMPlanner(toy, CEMConfig(horizon=1)).plan(
        toy.encode_state(START), START, goal_after(toy, [0.01, 0, 0, 0, 0, 0, 0]), seed=3
    )
    assert result.first_action[6].item() == 0.0
    big = CEMPlanner(toy, CEMConfig(horizon=1)).plan(
        toy.encode_state(START), START, goal_after(toy, [0, 0, 0, 0, 0, 0, 0.8]), seed=3
    )
    assert 0.6 < big.first_action[6].item() <= 0.75


def test_warm_start_helps_on_moving_goal(toy):
    """Receding-horizon tracking of a moving goal at a tiny budget: warm start reaches lower energies."""

    def track(warm: bool, seed: int) -> float:
        planner = CEMPlanner(toy, CEMConfig(horizon=3, samples=24, topk=6, iterations=2, warm_start=warm))
        state, energies = torch.tensor([0.4, 0.0, 0.3, 0.0, 0.0, 0.0, 0.0]), []
        for k in range(10):
            goal = torch.tensor([0.49 + 0.03 * k, 0.02 * k, 0.3, 0, 0, 0, 0])
            result = planner.plan(toy.encode_state(state), state, toy.encode_state(goal), seed=seed * 100 + k)
            energies.append(result.energy)
            state = compose_pose(state, result.first_action)
        return sum(energies) / len(energies)

    cold = [track(False, s) for s in range(3)]
    warm = [track(True, s) for s in range(3)]
    assert sum(warm) < 0.7 * sum(cold), (warm, cold)


def test_elite_reuse_makes_best_energy_monotone_and_population_decays(toy):
    cfg = CEMConfig(horizon=2, samples=64, topk=8, iterations=5, elite_reuse=0.5, population_decay=0.7)
    result = CEMPlanner(toy, cfg).plan(
        toy.encode_state(START), START, goal_after(toy, [0.04, -0.03, 0.02, 0, 0, 0, 0]), seed=0
    )
    hist = result.energy_history
    assert all(b <= a + 1e-7 for a, b in zip(hist, hist[1:]))
    assert result.samples_evaluated == sum(cfg.population(i) for i in range(5)) < 5 * 64
    assert cfg.population(4) == 16  # floor at 2 * topk


def test_warm_start_shift_and_explicit_previous_plan(toy):
    prev = torch.arange(21, dtype=torch.float32).reshape(3, 7)
    shifted = shift_plan(prev, horizon=3)
    assert torch.equal(shifted[:2], prev[1:]) and torch.equal(shifted[2], torch.zeros(7))
    goal = goal_after(toy, [0.03, 0.0, 0.0, 0, 0, 0, 0])
    planner = CEMPlanner(toy, CEMConfig(horizon=2, samples=16, iterations=1))
    first = planner.plan(toy.encode_state(START), START, goal, seed=0)
    # a previous plan whose shifted version is `first`: it is a candidate of the first iteration
    previous = torch.cat([torch.zeros(1, 7), first.actions])
    again = planner.plan(toy.encode_state(START), START, goal, seed=0, warm_start=previous)
    assert again.energy_history[0] <= first.energy + 1e-6


@pytest.mark.parametrize("energy,frames", [("l2", "last"), ("cosine", "last"), ("l1", "all")])
def test_other_energies_also_find_the_goal(toy, energy, frames):
    delta = torch.tensor([0.02, -0.02, 0.02, 0, 0, 0, 0])
    cfg = CEMConfig(horizon=1, iterations=15, energy=energy, energy_frames=frames)
    result = CEMPlanner(toy, cfg).plan(toy.encode_state(START), START, goal_after(toy, delta.tolist()), seed=0)
    torch.testing.assert_close(result.first_action[:3], delta[:3], atol=4e-3, rtol=0)


def test_energy_functions_values():
    pred = torch.zeros(2, 3, 4, 5)
    pred[1, -1] = 2.0
    goal = torch.ones(4, 5)
    assert torch.equal(l1_energy(pred[:, -1], goal), torch.tensor([1.0, 1.0]))
    assert torch.equal(l2_energy(pred[:, -1], goal), torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(cosine_energy(pred[1, -1:], goal), torch.tensor([0.0]))
    torch.testing.assert_close(trajectory_energy(pred, goal, "l1", "all"), torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(trajectory_energy(pred, goal, "l2", "all"), torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="unknown energy"):
        trajectory_energy(pred, goal, "huber")
    with pytest.raises(ValueError, match="does not match"):
        trajectory_energy(pred, torch.ones(3, 5))


def test_result_is_json_friendly(toy):
    result = CEMPlanner(toy, CEMConfig(horizon=2, samples=16, iterations=2)).plan(
        toy.encode_state(START), START, goal_after(toy, [0.01, 0, 0, 0, 0, 0, 0]), seed=0
    )
    assert isinstance(result, PlanResult)
    d = json.loads(json.dumps(result.to_dict()))
    assert len(d["actions"]) == 2 and len(d["first_action"]) == 7 and len(d["energy_history"]) == 2
    assert d["wall_time"] > 0 and d["timings"]["total_s"] == pytest.approx(d["wall_time"])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(topk=1), "topk"),
        (dict(samples=5, topk=10), "topk"),
        (dict(energy="huber"), "energy"),
        (dict(axis={7: 0.0}), "axis"),
        (dict(workspace=((0, 0, 1), (1, 1, 0))), "workspace"),
        (dict(population_decay=0.0), "population_decay"),
    ],
)
def test_bad_config_is_rejected_clearly(toy, kwargs, match):
    with pytest.raises(ValueError, match=match):
        CEMPlanner(toy, CEMConfig(**kwargs))


def test_bad_inputs_are_rejected_clearly(toy):
    planner = CEMPlanner(toy, CEMConfig(horizon=1, samples=8, topk=2, iterations=1))
    rep = toy.encode_state(START)
    with pytest.raises(ValueError, match="current_state"):
        planner.plan(rep, torch.zeros(6), rep)
    with pytest.raises(ValueError, match="current_state"):
        planner.plan(rep, torch.full((7,), float("nan")), rep)
    with pytest.raises(ValueError, match="differ in shape"):
        planner.plan(rep, START, rep[:8])
    with pytest.raises(ValueError, match="current_rep"):
        planner.plan(rep.expand(2, 16, 8), START, rep)


def test_config_from_dict_for_yaml_sections():
    cfg = CEMConfig.from_dict({"horizon": 3, "axis": {"z": 0.0}, "workspace": [[0, -1, 0], [1, 1, 1]]})
    assert cfg.horizon == 3 and cfg.workspace == ((0.0, -1.0, 0.0), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="unknown CEMConfig keys"):
        CEMConfig.from_dict({"horizn": 3})
    with pytest.raises(ValueError, match="topk"):
        CEMConfig.from_dict({"topk": 1})
