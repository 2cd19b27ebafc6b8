"""The twist watchdog: what a velocity stream (~/ee_twist for a servo driver) sends between closed-loop steps.

A servo driver keeps moving on the last twist it got until its own timeout. The planner node therefore republishes
the in-flight step's twist at the watchdog rate while that step is fresh (younger than the timeout), then sends
`HALT_MESSAGES` zero twists and falls silent until the next command; stop, cancel, abort and deactivate end the
stream at once (`halt`). This class decides what each tick sends; the node passes a repeated step through the
command gate and publishes. Pure Python.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

HALT_MESSAGES = 4  # zero twists sent when the stream stops (then silence until the next command)


@dataclass(frozen=True)
class WatchdogTick:
    """One tick's message: repeat `command` (the last step sent) or, when `command` is None, a zero twist."""

    command: Any | None
    frame: str

    @property
    def zero(self) -> bool:
        return self.command is None


class TwistWatchdog:
    """The latest step of a twist stream and how many zero twists it still owes."""

    def __init__(self, halt_messages: int = HALT_MESSAGES) -> None:
        self.halt_messages = halt_messages
        self._lock = threading.Lock()
        self._command: Any | None = None
        self._frame = ""
        self._time = -math.inf  # when the latest step was sent (monotonic s); -inf once halted
        self._halts = 0

    def sent(self, command: Any, frame: str, now: float) -> None:
        """A step went out at `now`: repeat it while fresh, then zero the stream."""
        with self._lock:
            self._command, self._frame, self._time, self._halts = command, frame, now, self.halt_messages

    def tick(self, now: float, timeout: float) -> WatchdogTick | None:
        """What to send now: the step again (fresh: sent at most `timeout` s ago), a zero twist (one of the halts
        owed), or nothing (None: no step ever sent, or the stream is over)."""
        with self._lock:
            if self._command is None:
                return None
            if now - self._time <= timeout:
                return WatchdogTick(self._command, self._frame)
            if self._halts <= 0:
                return None
            self._halts -= 1
            return WatchdogTick(None, self._frame)

    def halt(self) -> str | None:
        """End the stream now: zero twists from the next tick on. Returns the stream's frame for an immediate zero
        twist, or None when no step was ever sent (nothing to stop)."""
        with self._lock:
            if self._command is None:
                return None
            self._time, self._halts = -math.inf, self.halt_messages
            return self._frame
