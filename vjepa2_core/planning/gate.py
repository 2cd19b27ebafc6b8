"""The last check before a command reaches the robot: is it still safe to send it *now*?

A closed-loop step is decided from inputs that were current when its plan started; the command goes out a plan
and a control period later. In between the operator may press stop, the node may be deactivated (and activated
again), the goal may be cancelled or replaced, a safety limit may be tightened, an input may go stale or the pose
may jump. `CommandGate` holds the state that decides this (active, stopped, the current episode) and one lock, so
check and publish are atomic: once `stop()` or `deactivate()` has returned, no command checked before it is sent
after it. `decide()` re-applies the current limits to the command, so a tightened limit governs the next command,
not the next plan. Every refusal has a reason for diagnostics. Pure Python: the ROS node only wires it up.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vjepa2_core.planning import safety
from vjepa2_core.planning.safety import SafetyLimits

INACTIVE = "inactive"  # the lifecycle node is not active (configure + activate, or autostart)
GOAL_ENDED = "goal_ended"  # the goal that planned the command is over: cancelled, replaced, stopped, deactivated
SHUTTING_DOWN = "shutting_down"


@dataclass
class GateDecision:
    """What may be sent: `action` (the command re-limited to the current limits) or None with the reasons why not."""

    action: np.ndarray | None
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return self.action is not None


class CommandGate:
    """Lifecycle, stop and episode state of one command stream, checked at the moment each command is sent.

    An episode is one goal's run; `begin()` starts one and returns its number, and anything that ends a goal from
    outside (stop, deactivate, shutdown, a newer goal) moves to the next number. A command carries the number of
    the episode that planned it and is dropped once that episode is over, so a goal never revives after
    deactivate + activate or stop + resume.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()  # held while a command is checked and published
        self._changed = threading.Condition(self.lock)
        self.active = False
        self.stopped = False
        self.episode = 0
        self._ended: dict[int, str] = {}  # why an episode ended, for the goal's result (bounded: see end())

    def begin(self) -> int:
        """Start a new episode (a goal) and return its number; any older episode is over."""
        with self.lock:
            return self._next(GOAL_ENDED)

    def end(self, reason: str) -> None:
        """End the current episode from outside (its commands are dropped from now on) and wake its waits."""
        with self.lock:
            self._next(reason)

    def _next(self, reason: str) -> int:
        self._ended = {self.episode: reason}  # only the latest ended episode can still be waiting
        self.episode += 1
        self._changed.notify_all()
        return self.episode

    def activate(self) -> None:
        with self.lock:
            self.active = True

    def deactivate(self) -> None:
        with self.lock:
            self.active = False
            self._next(INACTIVE)

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            self._next(safety.STOPPED)

    def resume(self) -> bool:
        """Allow commands again (for goals started from now on); returns whether it was stopped."""
        with self.lock:
            was, self.stopped = self.stopped, False
            return was

    def ended(self, episode: int) -> str:
        """Why `episode` is over ('' while it is the current one). Takes no lock (a caller may hold a lock that is
        taken after this one); an episode that just ended may read GOAL_ENDED instead of its precise reason."""
        if episode == self.episode:
            return ""
        return self._ended.get(episode, GOAL_ENDED)

    def wait_ended(self, episode: int, timeout: float) -> str:
        """Wait up to `timeout` s; returns early with the reason when `episode` ends ('' when it did not)."""
        with self.lock:
            self._changed.wait_for(lambda: episode != self.episode, max(0.0, timeout))
            return self.ended(episode)

    def blocking(self) -> list[str]:
        """The gate's own reasons no command may go out now (inputs are checked by `safety.blocking_reasons`)."""
        with self.lock:
            return ([INACTIVE] if not self.active else []) + ([safety.STOPPED] if self.stopped else [])

    def decide(
        self,
        *,
        episode: int,
        cancelled: bool,
        state: np.ndarray | Sequence[float],
        action: np.ndarray | Sequence[float],
        input_reasons: Sequence[str],
        limits: SafetyLimits,
    ) -> GateDecision:
        """May `episode`'s command `action` from `state` go out now? Call with `lock` held through the publish.

        `input_reasons` are what the inputs say now (`safety.blocking_reasons` and pose plausibility); `limits`
        are the current ones: the action is limited again, so a tightened limit applies to this very command.
        """
        with self.lock:
            reasons = self.blocking()
            over = self.ended(episode)
            if over or cancelled:
                reasons.append(GOAL_ENDED)
                if over not in ("", GOAL_ENDED, *reasons):
                    reasons.append(over)  # what ended it: inactive (deactivate), stopped, shutting_down
            reasons += [r for r in input_reasons if r not in reasons]
            if reasons:
                return GateDecision(None, reasons)
            safe, notes = safety.limit_action(state, action, limits)
            if safety.OUTSIDE_WORKSPACE in notes:
                return GateDecision(None, [safety.OUTSIDE_WORKSPACE])
            return GateDecision(safe, [], notes)
