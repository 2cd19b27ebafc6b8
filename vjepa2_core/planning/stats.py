"""A planner node's statistics for diagnostics: event counters and what the last plan, stop and drop were.

Every callback that counts something (a malformed frame, a refused budget, a dropped command) and the diagnostics
timer that reports it share one small thread-safe object instead of fields of the node. `values` builds the
key/value list the node publishes on /diagnostics, `summary` its level and message. Pure Python.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

from vjepa2_core.planning import safety
from vjepa2_core.planning.gate import INACTIVE
from vjepa2_core.planning.inputs import Observation

# The node's event counters (diagnostics), all from zero.
COUNTERS = (
    *("malformed_images", "malformed_states", "plans", "plan_errors", "commands", "safety_stops"),
    *("refused_budgets", "refused_parameters", "busy_answers", "callback_errors", "dropped_commands", "pose_jumps"),
)
OK, WARN, ERROR = 0, 1, 2  # diagnostic levels (diagnostic_msgs/DiagnosticStatus byte values)


class NodeStats:
    """Counters and the latest stop reasons, clamps, dropped-command reasons, energy and plan time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.last: dict[str, Any] = {
            "reasons": [],
            "energy": math.nan,
            "plan_time": math.nan,
            "notes": [],
            "dropped": [],
        }

    def count(self, key: str) -> int:
        """Count one `key` event; returns the new count."""
        with self.lock:
            self.counts[key] += 1
            return self.counts[key]

    def planned(self, energy: float, seconds: float) -> None:
        with self.lock:
            self.counts["plans"] += 1
            self.last.update(energy=float(energy), plan_time=seconds)

    def safety_stop(self, reasons: Sequence[str]) -> None:
        with self.lock:
            self.counts["safety_stops"] += 1
            self.last["reasons"] = list(reasons)

    def stopped(self, reasons: Sequence[str]) -> None:
        """Commands stopped for `reasons` by request (~/stop): reported, not counted as a safety stop."""
        with self.lock:
            self.last["reasons"] = list(reasons)

    def dropped(self, reasons: Sequence[str]) -> None:
        with self.lock:
            self.counts["dropped_commands"] += 1
            self.last["dropped"] = list(reasons)

    def stepped(self, notes: Sequence[str]) -> None:
        """A command went out with `notes` (its clamps): no stop reason stands."""
        with self.lock:
            self.last["reasons"], self.last["notes"] = [], list(notes)

    def values(
        self, obs: Observation, reasons: Sequence[str], now: float, goal_active: bool, planning: bool
    ) -> dict[str, Any]:
        """The diagnostics key/values: the counters, then the state of the inputs, the last plan and the goal."""
        with self.lock:
            counts, last = dict(self.counts), dict(self.last)
        return {
            **counts,
            "blocking": ",".join(reasons) or "none",
            "last_stop_reasons": ",".join(last["reasons"]) or "none",
            "last_clamps": ",".join(last["notes"]) or "none",
            "camera_age_s": _age(obs.image_time, now),
            "state_age_s": _age(obs.pose_time, now),
            "last_energy": f"{last['energy']:.5f}",
            "last_plan_time_s": f"{last['plan_time']:.3f}",
            "goal_active": goal_active,
            "planning": planning,
            "last_dropped": ",".join(last["dropped"]) or "none",
        }


def summary(reasons: Sequence[str]) -> tuple[int, str]:
    """Diagnostic level and message for the reasons commands are blocked now."""
    if not reasons:
        return OK, "ready"
    if list(reasons) == [safety.STOPPED]:
        return WARN, "stopped (call ~/resume)"
    if reasons[0] == INACTIVE:
        return WARN, "inactive (lifecycle): " + ", ".join(reasons)
    return ERROR, "commands blocked: " + ", ".join(reasons)


def _age(stamp: float | None, now: float) -> str:
    return "never" if stamp is None else f"{now - stamp:.3f}"
