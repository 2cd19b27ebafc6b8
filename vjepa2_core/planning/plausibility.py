"""Pose plausibility: a reported end-effector pose that moved farther than the arm can between two messages.

A driver or localisation glitch can report a pose a metre away for one message (or from then on). Trusted, the
next command is one bounded step from a place the arm is not, i.e. up to a metre from where it really is. The arm
moves at most `safety.max_translation` per control period when this node drives it, so a pose-to-pose move
beyond `JUMP_MARGIN` times that (scaled by the time between the two messages, never less than one period's worth)
is a jump: commands are blocked (POSE_JUMP) until `CONSISTENT_POSES` consecutive poses are consistent again.
Pure Python; the ROS node feeds it every pose it receives.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vjepa2_core.planning.safety import SafetyLimits

POSE_JUMP = "pose_jump"  # a blocking reason, like outside_workspace
JUMP_MARGIN = 3.0  # x max_translation per control period: the driver may lag and catch up, poses may bunch up
CONSISTENT_POSES = 3  # consecutive plausible pose-to-pose moves that end a jump


def max_plausible_move(dt: float, limits: SafetyLimits, control_rate: float) -> float:
    """Metres the end effector can plausibly move in `dt` seconds while this node commands it."""
    return JUMP_MARGIN * limits.max_translation * max(1.0, dt * control_rate)


class PoseTracker:
    """Follows the reported positions and says whether the latest ones are consistent with each other."""

    def __init__(self) -> None:
        self.position: np.ndarray | None = None
        self.time: float | None = None
        self.consistent = CONSISTENT_POSES  # plausible moves since the last jump
        self.jumps = 0

    def update(self, position: np.ndarray | Sequence[float], now: float, limits: SafetyLimits, rate: float) -> bool:
        """Record a pose received at `now` (monotonic s); returns True when it jumped from the previous one."""
        xyz = np.asarray(position, dtype=np.float64)[:3]
        jumped = False
        if self.position is not None and np.isfinite(xyz).all() and np.isfinite(self.position).all():
            moved = float(np.linalg.norm(xyz - self.position))
            jumped = moved > max_plausible_move(now - self.time, limits, rate)
        self.position, self.time = xyz, now
        if jumped:
            self.consistent, self.jumps = 0, self.jumps + 1
        else:
            self.consistent = min(CONSISTENT_POSES, self.consistent + 1)
        return jumped

    @property
    def jumping(self) -> bool:
        """True until CONSISTENT_POSES plausible moves have followed the last jump."""
        return self.consistent < CONSISTENT_POSES
