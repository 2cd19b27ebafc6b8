"""The measured plan speed (budget.PlanSpeed) and the controller's public `reconfigure`: the two things the planner
node's live parameters and budget checks use, tested on the toy world model without ROS."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from vjepa2_core.planning.budget import PlanSpeed, plan_budget_refusal, plan_cost
from vjepa2_core.planning.cem import CEMConfig
from vjepa2_core.planning.controller import ClosedLoopController, ControllerConfig
from vjepa2_core.planning.safety import SafetyLimits
from vjepa2_core.planning.toy import ToyWorldModel

CEM = CEMConfig(horizon=1, samples=32, topk=4, iterations=2, maxnorm=0.15, momentum_std=0.15)
BUDGET = {"horizon": 2, "samples": 100, "iterations": 10}


def test_the_fastest_speed_is_kept_whatever_the_order():
    toy, speed = ToyWorldModel(), PlanSpeed()
    frames = plan_cost(toy, **BUDGET).token_frames
    assert speed.seconds_per_token_frame is None
    assert speed.record(toy, **BUDGET, search_seconds=2.0) == pytest.approx(2.0 / frames)
    speed.record(toy, **BUDGET, search_seconds=1.0)
    speed.record(toy, **BUDGET, search_seconds=5.0)  # a slow plan on a busy machine does not count against us
    assert speed.seconds_per_token_frame == pytest.approx(1.0 / frames)
    threads = [threading.Thread(target=speed.record, args=(toy, *BUDGET.values(), s)) for s in (0.9, 0.5, 0.7, 3.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30.0)
    assert speed.seconds_per_token_frame == pytest.approx(0.5 / frames)


def test_refusal_bounds_time_only_once_measured_and_only_when_asked():
    toy, speed = ToyWorldModel(), PlanSpeed()
    big = {"horizon": 5, "samples": 1000, "iterations": 100}
    assert speed.refusal(toy, **big, deadline=1.0) is None  # nothing measured: memory only, and it fits
    speed.record(toy, **BUDGET, search_seconds=1.0)  # ~1 s for a budget far smaller than `big`
    refusal = speed.refusal(toy, **big, deadline=1.0)
    assert refusal is not None and "more than the plan deadline (1 s)" in refusal
    assert refusal == plan_budget_refusal(
        toy, **big, seconds_per_token_frame=speed.seconds_per_token_frame, deadline=1.0
    )
    assert speed.refusal(toy, **big, deadline=1.0, measured=False) is None
    assert speed.refusal(toy, **BUDGET, deadline=10.0) is None


def test_reconfigure_applies_limits_rules_and_a_new_planner_only_for_a_new_cem():
    toy = ToyWorldModel()
    ctrl = ClosedLoopController(toy, CEM, SafetyLimits(), ControllerConfig())
    planner = ctrl.planner
    tight = SafetyLimits(max_translation=0.01)
    ctrl.reconfigure(CEM, tight, ControllerConfig(max_steps=7))
    assert ctrl.limits == tight and ctrl.rules.max_steps == 7 and ctrl.planner is planner  # same cem: same planner
    bigger = dataclasses.replace(CEM, samples=64)
    ctrl.reconfigure(cem=bigger)
    assert ctrl.cem == bigger and ctrl.planner is not planner
    assert ctrl.limits == tight and ctrl.rules.max_steps == 7  # None keeps a setting
    state = np.array([0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0])
    ctrl.start_reps([toy.encode_state(np.array([0.2, 0.0, 0.5, 0, 0, 0, 0]))])
    step = ctrl.step_rep(toy.encode_state(state), state, seed=0)
    assert np.linalg.norm(step.action[:3]) <= 0.01 + 1e-9  # the new limit governs the next step


def test_invalid_reconfigure_changes_nothing():
    ctrl = ClosedLoopController(ToyWorldModel(), CEM, SafetyLimits(), ControllerConfig())
    before = (ctrl.cem, ctrl.planner, ctrl.limits, ctrl.rules)
    with pytest.raises(ValueError, match="max_steps"):
        ctrl.reconfigure(
            dataclasses.replace(CEM, samples=64), SafetyLimits(max_translation=0.01), ControllerConfig(max_steps=0)
        )
    assert (ctrl.cem, ctrl.planner, ctrl.limits, ctrl.rules) == before
