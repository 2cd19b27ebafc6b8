"""Safety rules between a plan and a robot command: clamps, workspace box, staleness, NaN and deadline checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vjepa2_core.planning import safety
from vjepa2_core.planning.safety import SafetyLimits

LIMITS = SafetyLimits(
    max_translation=0.05,
    max_rotation=0.1,
    max_gripper_step=0.5,
    workspace_min=(0.2, -0.5, 0.05),
    workspace_max=(0.8, 0.5, 0.9),
    stale_timeout=0.5,
    plan_deadline=2.0,
)
POSE = np.array([0.5, 0.0, 0.4, math.pi, 0.0, 0.0, 0.2])


def test_small_action_passes_unchanged():
    a = np.array([0.01, -0.02, 0.01, 0.05, 0.0, -0.05, 0.1])
    out, notes = safety.limit_action(POSE, a, LIMITS)
    np.testing.assert_allclose(out, a)
    assert notes == []


def test_translation_norm_is_limited_and_direction_kept():
    a = np.array([0.3, 0.4, 0.0, 0.5, -0.5, 0.0, 0.9])
    out, notes = safety.limit_action(POSE, a, LIMITS)
    assert np.linalg.norm(out[:3]) == pytest.approx(0.05)
    np.testing.assert_allclose(out[:3] / np.linalg.norm(out[:3]), [0.6, 0.8, 0.0])
    np.testing.assert_allclose(out[3:6], [0.1, -0.1, 0.0])
    assert out[6] == pytest.approx(0.5)
    assert safety.CLAMPED_STEP in notes


def test_workspace_box_stops_target_at_the_wall():
    pose = POSE.copy()
    pose[2] = 0.07  # 2 cm above the floor of the box
    out, notes = safety.limit_action(pose, [0.0, 0.0, -0.04, 0, 0, 0, 0], LIMITS)
    assert pose[2] + out[2] == pytest.approx(0.05)
    assert notes == [safety.CLAMPED_WORKSPACE]


def test_gripper_target_stays_in_unit_interval():
    pose = POSE.copy()
    pose[6] = 0.9
    out, _ = safety.limit_action(pose, [0, 0, 0, 0, 0, 0, 0.5], LIMITS)
    assert pose[6] + out[6] == pytest.approx(1.0)


def test_outside_box_moves_back_by_at_most_one_step():
    pose = POSE.copy()
    pose[0] = 1.5  # far outside x max 0.8
    out, notes = safety.limit_action(pose, [0.02, 0, 0, 0, 0, 0, 0], LIMITS)
    assert out[0] == pytest.approx(-0.05)  # toward the box, one step
    assert np.linalg.norm(out[:3]) <= LIMITS.max_translation + 1e-12
    assert safety.CLAMPED_WORKSPACE in notes


def test_random_actions_always_respect_limits():
    rng = np.random.default_rng(0)
    for _ in range(500):
        pose = np.concatenate(
            [rng.uniform([0.1, -0.6, 0.0], [0.9, 0.6, 1.0]), rng.uniform(-3, 3, 3), [rng.uniform(0, 1)]]
        )
        out, _ = safety.limit_action(pose, rng.normal(0, 0.2, 7), LIMITS)
        assert np.linalg.norm(out[:3]) <= LIMITS.max_translation + 1e-9
        assert np.all(np.abs(out[3:6]) <= LIMITS.max_rotation + 1e-12)
        assert 0.0 <= pose[6] + out[6] <= 1.0 + 1e-12
        inside = np.all((pose[:3] >= LIMITS.workspace_min) & (pose[:3] <= LIMITS.workspace_max))
        if inside:
            target = pose[:3] + out[:3]
            assert np.all(target >= np.array(LIMITS.workspace_min) - 1e-12)
            assert np.all(target <= np.array(LIMITS.workspace_max) + 1e-12)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="7 values"):
        safety.limit_action(POSE, [0.0, 0.1], LIMITS)
    with pytest.raises(ValueError, match="pose must have 7"):
        safety.clamp_to_workspace(POSE[:6], np.zeros(7), LIMITS)


def test_staleness_and_missing_inputs():
    ok = dict(stopped=False, now=10.0, image_stamp=9.8, state_stamp=9.9, state=POSE, limits=LIMITS)
    assert safety.blocking_reasons(**ok) == []
    assert safety.blocking_reasons(**{**ok, "image_stamp": 9.0}) == [safety.STALE_CAMERA]
    assert safety.blocking_reasons(**{**ok, "state_stamp": 9.4}) == [safety.STALE_STATE]
    assert safety.blocking_reasons(**{**ok, "image_stamp": None, "state": None}) == [safety.NO_CAMERA, safety.NO_STATE]
    assert safety.blocking_reasons(**{**ok, "stopped": True}) == [safety.STOPPED]
    nan_state = POSE.copy()
    nan_state[1] = np.nan
    assert safety.blocking_reasons(**{**ok, "state": nan_state}) == [safety.NON_FINITE_INPUT]
    assert safety.is_stale(None, 1.0, 5.0) and not safety.is_stale(0.9, 1.0, 0.5)


def test_plan_checks_nan_inf_and_deadline():
    good = np.zeros((3, 7))
    assert safety.check_plan(good, 0.4, 1.0, LIMITS) == []
    bad = good.copy()
    bad[1, 2] = np.inf
    assert safety.check_plan(bad, 0.4, 1.0, LIMITS) == [safety.NON_FINITE_PLAN]
    assert safety.check_plan(good, float("nan"), 1.0, LIMITS) == [safety.NON_FINITE_PLAN]
    assert safety.check_plan(good, 0.4, 2.5, LIMITS) == [safety.DEADLINE_MISSED]
    assert safety.all_finite([1.0], np.ones(3)) and not safety.all_finite(None)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_translation": 0.0}, "max_translation"),
        ({"stale_timeout": -1.0}, "stale_timeout"),
        ({"plan_deadline": float("inf")}, "plan_deadline"),
        ({"workspace_min": (0.0, 0.0)}, "3 values"),
        ({"workspace_min": (1.0, 0.0, 0.0), "workspace_max": (0.5, 1.0, 1.0)}, "min < max"),
    ],
)
def test_invalid_limits_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SafetyLimits(**kwargs)
