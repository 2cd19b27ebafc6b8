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


def test_just_outside_box_moves_back_into_it_by_at_most_one_step():
    pose = POSE.copy()
    pose[0] = 0.83  # 3 cm beyond x max 0.8 (noise at the wall)
    out, notes = safety.limit_action(pose, [0.02, 0, 0, 0, 0, 0, 0], LIMITS)  # the plan pushes further out
    assert pose[0] + out[0] <= 0.8 + 1e-12 and np.linalg.norm(out[:3]) <= LIMITS.max_translation + 1e-12
    assert notes == [safety.CLAMPED_WORKSPACE]
    out, _ = safety.limit_action(pose, [-0.04, 0.04, 0, 0, 0, 0, 0], LIMITS)  # inward and sideways: as far as allowed
    target = pose[:3] + out[:3]
    assert np.linalg.norm(out[:3]) == pytest.approx(LIMITS.max_translation) and target[0] <= 0.8


def test_far_outside_box_commands_nothing_and_blocks():
    pose = POSE.copy()
    pose[0] = 1.5  # a glitch: 0.7 m beyond x max 0.8
    out, notes = safety.limit_action(pose, [0.02, 0, 0, 0.05, 0, 0, 0.1], LIMITS)
    np.testing.assert_array_equal(out, np.zeros(7))
    assert notes == [safety.OUTSIDE_WORKSPACE]
    ok = dict(stopped=False, now=10.0, image_stamp=9.8, state_stamp=9.9, limits=LIMITS)
    assert safety.blocking_reasons(state=pose, **ok) == [safety.OUTSIDE_WORKSPACE]
    assert safety.blocking_reasons(state=POSE, **ok) == []
    bad_gripper = POSE.copy()
    bad_gripper[6] = 1.0 + LIMITS.max_gripper_step + 0.1
    assert safety.blocking_reasons(state=bad_gripper, **ok) == [safety.OUTSIDE_WORKSPACE]


def _random_pose(rng: np.random.Generator) -> np.ndarray:
    """Poses in, near and far outside the box (up to 2 m out), grippers slightly and far outside [0, 1]."""
    scale = rng.choice([0.0, 0.03, 0.3, 2.0])
    xyz = rng.uniform(LIMITS.workspace_min, LIMITS.workspace_max) + rng.normal(0, scale, 3)
    gripper = rng.uniform(0, 1) + rng.choice([0.0, 0.2, 3.0]) * rng.normal()
    return np.concatenate([xyz, rng.uniform(-3, 3, 3), [gripper]])


def test_no_command_target_leaves_the_box_for_any_pose():
    rng = np.random.default_rng(0)
    lo, hi = np.array(LIMITS.workspace_min), np.array(LIMITS.workspace_max)
    moved = blocked = 0
    for _ in range(10000):
        pose = _random_pose(rng)
        action = rng.normal(0, rng.choice([0.01, 0.2, 5.0]), 7)
        out, notes = safety.limit_action(pose, action, LIMITS)
        assert np.linalg.norm(out[:3]) <= LIMITS.max_translation + 1e-9
        assert np.all(np.abs(out[3:6]) <= LIMITS.max_rotation + 1e-12)
        assert abs(out[6]) <= LIMITS.max_gripper_step + 1e-12
        reasons = safety.blocking_reasons(
            stopped=False, now=1.0, image_stamp=1.0, state_stamp=1.0, state=pose, limits=LIMITS
        )
        if safety.OUTSIDE_WORKSPACE in notes:
            assert reasons == [safety.OUTSIDE_WORKSPACE] and not out.any()
            blocked += 1
            continue
        assert reasons == []
        target = pose + out
        assert np.all(target[:3] >= lo - 1e-9) and np.all(target[:3] <= hi + 1e-9), (pose, action, out)
        assert -1e-12 <= target[6] <= 1.0 + 1e-12
        moved += not np.allclose(out, 0)
    assert moved > 3000 and blocked > 3000, (moved, blocked)  # both branches well covered


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
