"""The one closed-loop controller: plan, hold, stop, sub-goals and one safe step, on the exact toy world model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vjepa2_core.planning.cem import CEMConfig
from vjepa2_core.planning.controller import BLOCKED, GOAL_REACHED, HOLD, MOVE, ClosedLoopController, ControllerConfig
from vjepa2_core.planning.safety import SafetyLimits
from vjepa2_core.planning.toy import ToyWorldModel

START = np.array([0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0])
CEM = CEMConfig(horizon=1, samples=64, topk=8, iterations=4, maxnorm=0.15, momentum_std=0.15, axis={"gripper": 0.0})
LIMITS = SafetyLimits(max_translation=0.05, workspace_min=(-0.3, -0.3, 0.3), workspace_max=(0.3, 0.3, 0.8))


def controller(**rules) -> tuple[ClosedLoopController, ToyWorldModel]:
    toy = ToyWorldModel(seed=0)
    cem = dataclasses.replace(CEM, workspace=(LIMITS.workspace_min, LIMITS.workspace_max))
    return ClosedLoopController(toy, cem, LIMITS, ControllerConfig(**rules)), toy


def rep(toy: ToyWorldModel, state: np.ndarray) -> torch.Tensor:
    return toy.encode_state(torch.as_tensor(state, dtype=torch.float32))


def run(ctrl: ClosedLoopController, toy: ToyWorldModel, state: np.ndarray, steps: int) -> tuple[np.ndarray, list]:
    """Execute the controller's commands on the toy's exact dynamics (what a robot would do)."""
    decisions = []
    for i in range(steps):
        d = ctrl.step_rep(rep(toy, state), state, seed=i)
        decisions.append(d)
        if d.action is None:
            break
        state = state + d.action
    return state, decisions


def test_closed_loop_reaches_the_goal_in_bounded_steps_inside_the_box():
    ctrl, toy = controller(hold_margin=0.0)
    goal = START + np.array([0.2, -0.12, 0.1, 0, 0, 0, 0])
    ctrl.start_reps([rep(toy, goal)])
    final, decisions = run(ctrl, toy, START.copy(), 12)
    assert np.linalg.norm(final[:3] - goal[:3]) < 0.02, final
    lo, hi = np.array(LIMITS.workspace_min), np.array(LIMITS.workspace_max)
    state = START.copy()
    for d in decisions:
        assert np.linalg.norm(d.action[:3]) <= LIMITS.max_translation + 1e-9
        state = state + d.action
        assert np.all(state[:3] >= lo - 1e-9) and np.all(state[:3] <= hi + 1e-9)
    assert decisions[0].status == MOVE and decisions[0].plan is not None
    assert HOLD in [d.status for d in decisions[-3:]], "near the goal nothing beats standing still"


def test_a_multi_step_move_becomes_one_step_with_its_direction_kept():
    ctrl, toy = controller()
    goal = START + np.array([0.15, 0.0, 0.0, 0, 0, 0, 0])
    ctrl.start_reps([rep(toy, goal)])
    d = ctrl.step_rep(rep(toy, START), START, seed=0)
    planned = d.plan.first_action.numpy()[:3]
    assert np.linalg.norm(planned) > 0.1, "the search plans the whole 15 cm move"
    np.testing.assert_allclose(np.linalg.norm(d.action[:3]), 0.05, atol=1e-9)
    np.testing.assert_allclose(d.action[:3] / 0.05, planned / np.linalg.norm(planned), atol=1e-6)
    assert "clamped_step" in d.notes


def test_energy_threshold_stops_on_the_current_image_without_planning():
    ctrl, toy = controller(energy_threshold=1e-6)
    ctrl.start_reps([rep(toy, START)])
    d = ctrl.step_rep(rep(toy, START), START)
    assert d.status == GOAL_REACHED and d.action is None and d.plan is None and d.energy_now <= 1e-6


def test_warm_start_follows_the_cem_setting():
    ctrl, toy = controller()
    goal = START + np.array([0.1, 0.1, 0.0, 0, 0, 0, 0])
    ctrl.start_reps([rep(toy, goal)])
    ctrl.step_rep(rep(toy, START), START, seed=1)
    calls = []
    ctrl.planner.plan = lambda *a, **k: calls.append(k["warm_start"]) or pytest.fail("stop")  # noqa: B023
    with pytest.raises(pytest.fail.Exception):
        ctrl.step_rep(rep(toy, START), START, seed=2)
    assert calls == [None], "cem.warm_start is off by default"


def test_non_finite_state_and_plan_are_blocked():
    ctrl, toy = controller()
    ctrl.start_reps([rep(toy, START + 0.1)])
    bad = START.copy()
    bad[0] = np.nan
    d = ctrl.step_rep(rep(toy, START), bad)
    assert d.status == BLOCKED and d.action is None and d.notes == ["non_finite_input"]
    toy.weight[0, 0, 0] = float("nan")  # the model now predicts NaN for every move
    d = ctrl.step_rep(rep(toy, START), START)
    assert d.status == BLOCKED and d.action is None


def test_subgoals_advance_by_energy_then_by_steps_and_by_plateau():
    via = START + np.array([0.1, 0.0, 0.0, 0, 0, 0, 0])
    goal = START + np.array([0.1, 0.15, 0.0, 0, 0, 0, 0])
    ctrl, toy = controller(subgoal_threshold=1e-6)
    ctrl.start_reps([rep(toy, via), rep(toy, goal)])
    assert ctrl.step_rep(rep(toy, via), via, seed=0).subgoal == 1, "at the sub-goal: the next one is planned for"
    ctrl, toy = controller(subgoal_steps=2)
    ctrl.start_reps([rep(toy, via), rep(toy, goal)])
    assert [ctrl.step_rep(rep(toy, START), START, seed=i).subgoal for i in range(3)] == [0, 0, 1]
    ctrl, toy = controller(hold_margin=1e9)  # always holds: a plateau at every sub-goal
    ctrl.start_reps([rep(toy, via), rep(toy, goal)])
    d = ctrl.step_rep(rep(toy, START), START)
    assert d.status == HOLD and "next_subgoal" in d.notes and ctrl.subgoal == 1


def test_one_shot_plan_budget_and_cancellation():
    from vjepa2_core.planning.cem import PlanCancelled

    ctrl, toy = controller()
    goal = rep(toy, START + 0.05)
    result = ctrl.planner.plan(rep(toy, START), torch.as_tensor(START, dtype=torch.float32), goal, seed=0)
    assert len(result.energy_history) == CEM.iterations
    with pytest.raises(PlanCancelled):
        ctrl.planner.plan(rep(toy, START), torch.as_tensor(START, dtype=torch.float32), goal, should_stop=lambda: True)
    with pytest.raises(RuntimeError, match="start"):
        controller()[0].step_rep(rep(toy, START), START)
