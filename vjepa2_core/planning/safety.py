"""Safety checks between a plan and a robot command: pure functions on numpy arrays, no ROS, no torch.

An action is a per-step end-effector delta [dx dy dz droll dpitch dyaw dgripper]; a pose/state is
[x y z roll pitch yaw gripper]. The ROS node calls `blocking_reasons` and `limit_action` (through
`gate.CommandGate`) at the moment it sends each command, so the same rules hold for any caller.

The workspace rule, for any reported pose: a command's target (pose + action) is inside the workspace box with
the gripper in [0, 1], and the step obeys the per-step limits. A pose outside the box but within one step of it
(noise at a wall) gets a bounded step back into the box. A pose farther out (a glitch, a spoofed reading, a robot
moved by hand) cannot satisfy both, so no motion is commanded: `limit_action` returns a zero action noted
OUTSIDE_WORKSPACE and `blocking_reasons` withholds the command until the pose is back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Reasons a command is withheld (reported in diagnostics and action feedback).
STOPPED = "stopped"
NO_CAMERA = "no_camera"
NO_STATE = "no_state"
STALE_CAMERA = "stale_camera"
STALE_STATE = "stale_state"
NON_FINITE_INPUT = "non_finite_input"
NON_FINITE_PLAN = "non_finite_plan"
DEADLINE_MISSED = "deadline_missed"
OUTSIDE_WORKSPACE = "outside_workspace"  # the pose is more than one step outside the box (see module docstring)
# Notes when an action was changed (the command is still sent).
CLAMPED_STEP = "clamped_step"
CLAMPED_WORKSPACE = "clamped_workspace"


@dataclass(frozen=True)
class SafetyLimits:
    """Per-step and workspace limits; invalid values raise ValueError at construction (i.e. at node start-up)."""

    max_translation: float = 0.05  # metres per step (norm of dx dy dz)
    max_rotation: float = 0.2  # radians per step, per euler axis
    max_gripper_step: float = 1.0  # closedness change per step
    workspace_min: tuple[float, float, float] = (-1.0, -1.0, 0.0)
    workspace_max: tuple[float, float, float] = (1.0, 1.0, 1.5)
    stale_timeout: float = 1.0  # seconds since the last camera frame / state
    plan_deadline: float = 10.0  # seconds a plan may take before its result is discarded

    def __post_init__(self) -> None:
        for name in ("max_translation", "max_rotation", "max_gripper_step", "stale_timeout", "plan_deadline"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"safety limit {name} must be a finite number > 0, got {value!r}")
        lo, hi = np.asarray(self.workspace_min, float), np.asarray(self.workspace_max, float)
        if lo.shape != (3,) or hi.shape != (3,):
            raise ValueError(
                f"workspace_min/max must have 3 values (x y z), got {self.workspace_min!r}, " f"{self.workspace_max!r}"
            )
        if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (lo < hi).all()):
            raise ValueError(f"workspace box needs finite min < max on every axis, got {lo.tolist()} .. {hi.tolist()}")


def all_finite(*arrays: np.ndarray | Sequence[float] | float | None) -> bool:
    """True when every value of every argument is finite (None counts as missing, i.e. not finite)."""
    for a in arrays:
        if a is None:
            return False
        arr = np.asarray(a)
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            return False
    return True


def is_stale(stamp: float | None, now: float, timeout: float) -> bool:
    """True when an input arrived more than `timeout` seconds before `now` (or never)."""
    return stamp is None or (now - stamp) > timeout


def missed_deadline(elapsed: float, limits: SafetyLimits) -> bool:
    """True when planning took longer than the deadline, so its result describes an outdated scene."""
    return not math.isfinite(elapsed) or elapsed > limits.plan_deadline


def _vec(x: np.ndarray | Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if arr.shape != (7,):
        raise ValueError(f"{name} must have 7 values (x y z roll pitch yaw gripper), got shape {arr.shape}")
    return arr


def clamp_step(action: np.ndarray | Sequence[float], limits: SafetyLimits) -> np.ndarray:
    """Scale the translation to at most max_translation (direction kept); clip rotation and gripper deltas."""
    a = _vec(action, "action").copy()
    norm = float(np.linalg.norm(a[:3]))
    if norm > limits.max_translation:
        a[:3] *= limits.max_translation / norm
    a[3:6] = np.clip(a[3:6], -limits.max_rotation, limits.max_rotation)
    a[6] = np.clip(a[6], -limits.max_gripper_step, limits.max_gripper_step)
    return a


def _box_reach(pose: np.ndarray, limits: SafetyLimits) -> tuple[np.ndarray, float]:
    """The box point nearest the pose's xyz, and the gripper value in [0, 1] nearest its gripper."""
    return np.clip(pose[:3], limits.workspace_min, limits.workspace_max), float(np.clip(pose[6], 0.0, 1.0))


def in_reach_of_workspace(pose: np.ndarray | Sequence[float], limits: SafetyLimits) -> bool:
    """True when one step (translation and gripper limits) can bring the pose into the box and [0, 1]."""
    p = _vec(pose, "pose")
    if not np.isfinite(p).all():
        return False
    nearest, gripper = _box_reach(p, limits)
    return bool(
        np.linalg.norm(nearest - p[:3]) <= limits.max_translation and abs(gripper - p[6]) <= limits.max_gripper_step
    )


def _toward(p: np.ndarray, inside: np.ndarray, goal: np.ndarray, radius: float) -> np.ndarray:
    """The point of segment inside -> goal (both in the box) farthest along it that lies within `radius` of p."""
    d = goal - inside
    a, b, c = float(d @ d), float(2 * d @ (inside - p)), float((inside - p) @ (inside - p) - radius * radius)
    if a <= 0 or c > 0:
        return inside
    s = (-b + math.sqrt(max(b * b - 4 * a * c, 0.0))) / (2 * a)  # the upper root: |x(s) - p| = radius
    return inside + min(max(s, 0.0), 1.0) * d


def clamp_to_workspace(
    pose: np.ndarray | Sequence[float], action: np.ndarray | Sequence[float], limits: SafetyLimits
) -> np.ndarray:
    """Shorten the translation so the target is in the workspace box and the gripper target in [0, 1].

    For a pose in the box this keeps the step no longer than given. For a pose outside it, the target is the box
    point nearest the commanded one, pulled toward the pose's nearest box point until it is within one step
    (max_translation) of the pose. A pose that is not `in_reach_of_workspace` gets a zero action.
    """
    p, a = _vec(pose, "pose"), _vec(action, "action").copy()
    if not in_reach_of_workspace(p, limits):
        return np.zeros_like(a)
    nearest, gripper = _box_reach(p, limits)
    target = np.clip(p[:3] + a[:3], limits.workspace_min, limits.workspace_max)
    if np.linalg.norm(target - p[:3]) > limits.max_translation:
        target = _toward(p[:3], nearest, target, limits.max_translation)
    a[:3] = target - p[:3]
    g_target = float(np.clip(p[6] + a[6], 0.0, 1.0))
    if abs(g_target - p[6]) > limits.max_gripper_step:
        g_target = gripper
    a[6] = g_target - p[6]
    return a


def limit_action(
    pose: np.ndarray | Sequence[float], action: np.ndarray | Sequence[float], limits: SafetyLimits
) -> tuple[np.ndarray, list[str]]:
    """Per-step clamp, then the workspace rule (module docstring); returns the safe action and what was changed.

    The target pose + action is in the box for every pose that is `in_reach_of_workspace`; for any other pose
    the action is zero and the notes say OUTSIDE_WORKSPACE.
    """
    raw = _vec(action, "action")
    stepped = clamp_step(raw, limits)
    if not in_reach_of_workspace(pose, limits):
        return np.zeros_like(stepped), [OUTSIDE_WORKSPACE]
    safe = clamp_to_workspace(pose, stepped, limits)
    notes = []
    if not np.allclose(stepped, raw, rtol=0, atol=1e-12):
        notes.append(CLAMPED_STEP)
    if not np.allclose(safe, stepped, rtol=0, atol=1e-12):
        notes.append(CLAMPED_WORKSPACE)
    return safe, notes


def blocking_reasons(
    *,
    stopped: bool,
    now: float,
    image_stamp: float | None,
    state_stamp: float | None,
    state: np.ndarray | Sequence[float] | None,
    limits: SafetyLimits,
) -> list[str]:
    """Every reason a command may not be sent right now (empty list = allowed)."""
    reasons = []
    if stopped:
        reasons.append(STOPPED)
    if image_stamp is None:
        reasons.append(NO_CAMERA)
    elif is_stale(image_stamp, now, limits.stale_timeout):
        reasons.append(STALE_CAMERA)
    if state_stamp is None or state is None:
        reasons.append(NO_STATE)
    elif is_stale(state_stamp, now, limits.stale_timeout):
        reasons.append(STALE_STATE)
    if state is not None and not all_finite(state):
        reasons.append(NON_FINITE_INPUT)
    elif state is not None and not in_reach_of_workspace(state, limits):
        reasons.append(OUTSIDE_WORKSPACE)
    return reasons


def check_plan(actions: np.ndarray, energy: float, elapsed: float, limits: SafetyLimits) -> list[str]:
    """Reasons a finished plan may not be executed: NaN/inf in it, or it came too late."""
    reasons = []
    if not all_finite(actions, energy):
        reasons.append(NON_FINITE_PLAN)
    if missed_deadline(elapsed, limits):
        reasons.append(DEADLINE_MISSED)
    return reasons
