"""Every planner of the protocol on the toy world model (known optimum) and on a tiny random V-JEPA 2-AC model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vjepa2_core.planning.cem import CEMConfig, PlanCancelled, PlanResult
from vjepa2_core.planning.icem import coloured_noise_basis
from vjepa2_core.planning.mppi import mppi_weights
from vjepa2_core.planning.planners import PLANNERS, make_planner
from vjepa2_core.planning.poses import compose_pose
from vjepa2_core.planning.toy import ToyWorldModel

START = torch.tensor([0.4, 0.0, 0.3, 0.0, 0.0, 0.0, 0.0])
NAMES = sorted(PLANNERS)
# a budget at which each search converges on the toy (the gradient planner counts Adam steps as iterations)
BUDGET = {
    "cem": dict(iterations=15),
    "icem": dict(iterations=15),
    "mppi": dict(iterations=15),
    "gradient": dict(iterations=60, grad_lr=0.2),
    "cem_grad": dict(iterations=8, grad_steps=20),
    "predictive": dict(iterations=15),
}


@pytest.fixture(scope="module")
def toy() -> ToyWorldModel:
    return ToyWorldModel(num_tokens=16, embed_dim=8, seed=0)


def plan(toy, name, delta, seed=0, **overrides):
    cfg = CEMConfig(planner=name, **{**BUDGET[name], **overrides})
    goal = toy.encode_state(compose_pose(START, torch.tensor(delta)))
    return make_planner(toy, cfg).plan(toy.encode_state(START), START, goal, seed=seed)


@pytest.mark.parametrize("name", NAMES)
def test_finds_the_one_step_optimum(toy, name):
    delta = [0.03, -0.02, 0.01, 0.0, 0.0, 0.0, 0.0]
    result = plan(toy, name, delta, horizon=1)
    assert isinstance(result, PlanResult) and result.actions.shape == (1, 7)
    torch.testing.assert_close(result.first_action[:3], torch.tensor(delta[:3]), atol=2e-3, rtol=0)
    assert torch.equal(result.first_action[3:6], torch.zeros(3))
    assert result.energy < 0.01 * toy.weight.abs().mean().item()


@pytest.mark.parametrize("name", NAMES)
def test_two_step_goal_beyond_one_step_is_reached(toy, name):
    delta = [0.08, 0.02, -0.03, 0.0, 0.0, 0.0, 0.0]
    result = plan(toy, name, delta, horizon=2, seed=1)
    torch.testing.assert_close(result.predicted_states[-1, :3], START[:3] + torch.tensor(delta[:3]), atol=4e-3, rtol=0)
    assert result.actions[:, :3].abs().max() <= 0.05 + 1e-7


@pytest.mark.parametrize("name", NAMES)
def test_improves_over_its_first_iteration(toy, name):
    result = plan(toy, name, [0.04, -0.03, 0.02, 0, 0, 0, 0], horizon=2, seed=2)
    assert result.energy < 0.5 * result.energy_history[0], result.energy_history


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_plan_other_seed_other_search(toy, name):
    a, b, c = (plan(toy, name, [0.02, 0.02, 0.0, 0, 0, 0, 0], seed=s, horizon=2, iterations=3) for s in (7, 7, 8))
    assert torch.equal(a.actions, b.actions) and a.energy_history == b.energy_history and a.seed == 7
    assert a.energy_history != c.energy_history


@pytest.mark.parametrize("name", NAMES)
def test_bounds_pins_and_workspace_are_respected(toy, name):
    box = ((0.35, -0.1, 0.2), (0.45, 0.1, 0.4))
    bounds = dict(maxnorm=0.03, rotation=True, rot_maxnorm=0.05, axis={"y": 0.01}, close_gripper=2, workspace=box)
    # the goal lies far outside the box in +x: every plan must stop at the wall
    result = plan(toy, name, [0.3, 0, 0, 0, 0, 0, 0], horizon=4, **bounds)
    a, xyz = result.actions, result.predicted_states[:, :3]
    assert a[:, :3].abs().max() <= 0.03 + 1e-7 and a[:, 3:6].abs().max() <= 0.05 + 1e-7
    assert torch.all(a[:, 1] == 0.01) and torch.all(a[2:, 6] == 1.0)
    assert torch.all(xyz >= torch.tensor(box[0]) - 1e-6) and torch.all(xyz <= torch.tensor(box[1]) + 1e-6)
    assert xyz[-1, 0] > 0.44  # pushed against the wall


@pytest.mark.parametrize("name", NAMES)
def test_should_stop_cancels_and_time_budget_ends_early(toy, name):
    planner = make_planner(toy, CEMConfig(planner=name, horizon=2, samples=32, iterations=50))
    rep, goal = toy.encode_state(START), toy.encode_state(compose_pose(START, torch.tensor([0.02, 0, 0, 0, 0, 0, 0])))
    with pytest.raises(PlanCancelled):
        planner.plan(rep, START, goal, seed=0, should_stop=lambda: True)
    budget = make_planner(toy, CEMConfig(planner=name, horizon=2, samples=32, iterations=10**6, time_budget_s=0.05))
    result = budget.plan(rep, START, goal, seed=0)
    assert 1 <= len(result.energy_history) < 10**6 and result.wall_time < 2.0


class SlowToy(ToyWorldModel):
    """The toy with a fixed cost per rollout on a fake clock (the planners' `time.perf_counter`), so that a time
    budget holds a known number of iterations however loaded the machine is."""

    delay = 0.06

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def rollout(self, *args, **kwargs):
        self.now += self.delay
        return super().rollout(*args, **kwargs)


@pytest.mark.parametrize("name", ["cem", "mppi", "gradient"])
def test_time_budget_is_not_overrun_by_a_last_iteration(name, monkeypatch):
    """An iteration starts only if it should end within the budget (the old rule overran by up to one)."""
    from vjepa2_core.planning import base

    slow = SlowToy(num_tokens=16, embed_dim=8, seed=0)
    monkeypatch.setattr(base, "time", SimpleNamespace(perf_counter=slow.perf_counter))  # every planner's clock
    rep, goal = slow.encode_state(START), slow.encode_state(
        compose_pose(START, torch.tensor([0.02, 0, 0, 0, 0, 0, 0]))
    )
    budget = 0.2
    cfg = CEMConfig(planner=name, horizon=2, samples=8, topk=4, iterations=10**6, time_budget_s=budget)
    result = make_planner(slow, cfg).plan(rep, START, goal, seed=0)
    iterations = len(result.energy_history)
    assert 2 <= iterations <= round(budget / slow.delay)
    assert result.timings["optimize_s"] <= budget + 0.01  # the old rule ran one more (3 x 0.06 s -> 4 x 0.06 s)


def test_warm_start_is_a_first_candidate(toy):
    goal = toy.encode_state(compose_pose(START, torch.tensor([0.03, 0.0, 0.0, 0, 0, 0, 0])))
    for name in NAMES:
        planner = make_planner(toy, CEMConfig(planner=name, horizon=2, samples=16, iterations=1, grad_steps=0))
        first = planner.plan(toy.encode_state(START), START, goal, seed=0)
        again = planner.plan(
            toy.encode_state(START), START, goal, seed=0, warm_start=torch.cat([torch.zeros(1, 7), first.actions])
        )
        assert again.energy_history[0] <= first.energy + 1e-6, name


def test_coloured_noise_has_unit_variance_and_is_smooth_over_the_horizon():
    basis = coloured_noise_basis(6, 2.0, torch.device("cpu"))
    torch.testing.assert_close(basis.square().sum(0), torch.ones(6))
    noise = torch.randn(20000, basis.shape[0], generator=torch.Generator().manual_seed(0)) @ basis
    step_corr = torch.corrcoef(noise.T)[0, 1]
    assert noise.var(0).sub(1).abs().max() < 0.05 and step_corr > 0.3  # white noise: ~0
    white = coloured_noise_basis(6, 0.0, torch.device("cpu"))
    assert torch.corrcoef((torch.randn(20000, white.shape[0]) @ white).T)[0, 1].abs() < 0.05


def test_mppi_weights_prefer_low_energy_and_sum_to_one():
    w = mppi_weights(torch.tensor([1.0, 2.0, 3.0]), temperature=0.5)
    assert torch.isclose(w.sum(), torch.tensor(1.0)) and w[0] > w[1] > w[2]
    torch.testing.assert_close(mppi_weights(torch.ones(4), 0.1), torch.full((4,), 0.25))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(planner="newton"), "planner"),
        (dict(time_budget_s=-1.0), "time_budget_s"),
        (dict(mppi_temperature=0.0), "mppi_temperature"),
        (dict(grad_lr=0.0), "grad_lr"),
        (dict(grad_restarts=0), "grad_restarts"),
        (dict(icem_population_decay=1.5), "icem_population_decay"),
        (dict(icem_elite_fraction=-0.1), "icem_elite_fraction"),
    ],
)
def test_bad_planner_options_are_rejected_clearly(toy, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_planner(toy, CEMConfig(**kwargs))


def test_gradient_through_the_cached_rollout_equals_the_uncached_one():
    from vjepa2_core.planning.world_model import WorldModel

    torch.manual_seed(0)
    wm = WorldModel.random("vit_ac_tiny", seed=0)
    images = np.random.default_rng(0).integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    rep, goal = wm.encode(images[:1]), wm.encode(images[1:])
    actions = torch.randn(3, 3, 7) * 0.05
    grads = []
    for cached in (True, False):
        a = actions.clone().requires_grad_(True)
        pred, _ = wm.rollout_differentiable(rep, START, a, cached=cached)
        (pred[:, -1] - goal).abs().mean((-1, -2)).sum().backward()
        grads.append(a.grad)
        # the inference rollout runs the fast CPU kernels, the differentiable one F.linear/SDPA: fp32 rounding apart
        torch.testing.assert_close(pred.detach(), wm.rollout(rep, START, actions, cached=cached)[0], atol=1e-5, rtol=0)
    assert grads[0].abs().max() > 0
    torch.testing.assert_close(grads[0], grads[1], atol=1e-7, rtol=1e-4)
    # every planner runs on the real model, within bounds, with a finite energy, also under inference mode
    for name in NAMES:
        cfg = CEMConfig(planner=name, horizon=2, samples=8, topk=2, iterations=2, grad_restarts=2, grad_steps=2)
        with torch.inference_mode():
            result = make_planner(wm, cfg).plan(rep, START, goal, seed=0)
        assert np.isfinite(result.energy) and result.actions[:, :3].abs().max() <= cfg.maxnorm + 1e-7, name
        assert result.energy <= result.energy_history[0] + 1e-6 or name in ("cem", "mppi"), name
