"""The latest robot inputs of a planner node: camera image, end-effector pose, gripper, goal image.

ROS callbacks put each new input here with its receive time (monotonic seconds); the closed loop reads a consistent
copy (`snapshot`), asks why a command may not go out now (`assess`: stale or missing inputs, a pose jump, plus the
gate's own reasons) and waits for inputs newer than its last command (`wait_fresh`, on a condition variable, so a
new frame wakes it at once). Pure Python: the node only decodes messages and feeds them in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from vjepa2_core.planning import safety
from vjepa2_core.planning.gate import INACTIVE, SHUTTING_DOWN
from vjepa2_core.planning.plausibility import POSE_JUMP, PoseTracker
from vjepa2_core.planning.safety import SafetyLimits

WAIT_SLICE = 0.1  # s: the fresh-data wait looks at the episode's end at least this often


@dataclass
class Observation:
    """The latest inputs, with monotonic receive times (None = never received)."""

    image: np.ndarray | None = None
    image_time: float | None = None
    pose: np.ndarray | None = None  # [6] x y z roll pitch yaw
    pose_time: float | None = None
    frame_id: str = ""
    gripper: float = 0.0
    gripper_time: float | None = None
    goal: np.ndarray | None = None

    def state(self) -> np.ndarray | None:
        return None if self.pose is None else np.append(self.pose, self.gripper)


class InputStore:
    """Thread-safe latest inputs. `gripper`: a gripper topic is wired, so its age counts toward the state's."""

    def __init__(self, gripper: bool = True) -> None:
        self.gripper = gripper
        self._obs = Observation()
        self._poses = PoseTracker()  # pose plausibility (a jump blocks commands)
        self._lock = threading.Lock()
        self._new = threading.Condition(self._lock)
        self.closed = False

    def put_image(self, rgb: np.ndarray, now: float | None = None) -> None:
        with self._lock:
            self._obs.image, self._obs.image_time = rgb, _now(now)
            self._new.notify_all()

    def put_pose(
        self, pose: np.ndarray, frame_id: str, limits: SafetyLimits, control_rate: float, now: float | None = None
    ) -> bool:
        """Store a pose [6]; returns True when it jumped from the previous one (`PoseTracker`)."""
        now = _now(now)
        with self._lock:
            self._obs.pose, self._obs.pose_time, self._obs.frame_id = pose[:6], now, frame_id
            jumped = self._poses.update(pose[:3], now, limits, control_rate)
            self._new.notify_all()
        return jumped

    def put_gripper(self, closedness: float, now: float | None = None) -> None:
        with self._lock:
            self._obs.gripper, self._obs.gripper_time = float(closedness), _now(now)

    def put_goal(self, rgb: np.ndarray) -> None:
        with self._lock:
            self._obs.goal = rgb

    def snapshot(self) -> Observation:
        """A consistent copy of the latest inputs."""
        with self._lock:
            return replace(self._obs)

    def assess(
        self, gate_reasons: Sequence[str], limits: SafetyLimits, now: float | None = None
    ) -> tuple[Observation, list[str]]:
        """A copy of the latest inputs and every reason a command may not be sent now: `gate_reasons` (the gate's
        `blocking()`, taken by the caller before this store's lock) and what the inputs say."""
        with self._lock:
            obs = replace(self._obs)
            jumping = self._poses.jumping
        state_time = obs.pose_time
        if self.gripper and obs.pose_time is not None:
            state_time = None if obs.gripper_time is None else min(obs.pose_time, obs.gripper_time)
        reasons = safety.blocking_reasons(
            stopped=safety.STOPPED in gate_reasons,
            now=_now(now),
            image_stamp=obs.image_time,
            state_stamp=state_time,
            state=obs.state(),
            limits=limits,
        )
        if jumping:
            reasons.append(POSE_JUMP)
        if INACTIVE in gate_reasons:
            reasons.insert(0, INACTIVE)
        return obs, reasons

    def wait_fresh(self, since: float, timeout: float, ended: Callable[[], str] = lambda: "") -> list[str]:
        """Block until camera and pose both arrived after `since`; returns [] then, what is still missing on timeout,
        `[ended()]` once that says the wait is pointless (it must not take a lock held around `put_*`), or
        [SHUTTING_DOWN] after `close()`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self.closed:
                reason = ended()
                if reason:
                    return [reason]
                missing = []
                if self._obs.image_time is None or self._obs.image_time <= since:
                    missing.append(safety.STALE_CAMERA)
                if self._obs.pose_time is None or self._obs.pose_time <= since:
                    missing.append(safety.STALE_STATE)
                left = deadline - time.monotonic()
                if not missing or left <= 0:
                    return missing
                self._new.wait(min(left, WAIT_SLICE))
        return [SHUTTING_DOWN]

    def close(self) -> None:
        """Shutting down: every fresh-data wait returns now, and later ones at once."""
        with self._lock:
            self.closed = True
            self._new.notify_all()


def _now(now: float | None) -> float:
    return time.monotonic() if now is None else now
