"""The twist watchdog (vjepa2_core.planning.watchdog): repeat the fresh step, then a few zero twists, then silence.
Pure Python: the node's ticks are replayed here on a given clock."""

from __future__ import annotations

import threading

from vjepa2_core.planning.watchdog import HALT_MESSAGES, TwistWatchdog

TIMEOUT = 0.5


def test_nothing_is_sent_before_the_first_step():
    dog = TwistWatchdog()
    assert dog.tick(0.0, TIMEOUT) is None and dog.halt() is None
    assert dog.tick(100.0, TIMEOUT) is None  # a halt before any step owes no zero twists


def test_a_fresh_step_is_repeated_then_the_stream_is_zeroed_then_silent():
    dog = TwistWatchdog()
    dog.sent("step-1", "base", now=10.0)
    for now in (10.0, 10.2, 10.5):
        tick = dog.tick(now, TIMEOUT)
        assert tick is not None and not tick.zero and tick.command == "step-1" and tick.frame == "base"
    zeros = [dog.tick(10.6 + 0.1 * i, TIMEOUT) for i in range(HALT_MESSAGES)]
    assert all(t is not None and t.zero and t.frame == "base" for t in zeros)
    assert dog.tick(11.5, TIMEOUT) is None and dog.tick(12.0, TIMEOUT) is None


def test_halt_ends_a_fresh_stream_at_once_and_a_new_step_restarts_it():
    dog = TwistWatchdog()
    dog.sent("step-1", "tool", now=10.0)
    assert dog.halt() == "tool"  # the frame of the immediate zero twist
    ticks = [dog.tick(10.1, TIMEOUT) for _ in range(HALT_MESSAGES + 1)]
    assert all(t.zero for t in ticks[:HALT_MESSAGES]) and ticks[-1] is None  # fresh by time, but halted
    dog.sent("step-2", "tool", now=10.2)
    assert dog.tick(10.3, TIMEOUT).command == "step-2"


def test_halts_owed_are_counted_exactly_under_concurrent_ticks():
    """The watchdog timer and a halt from another thread share the state: exactly HALT_MESSAGES zero twists."""
    dog = TwistWatchdog(halt_messages=50)
    dog.sent("step", "base", now=0.0)
    dog.halt()
    zeros, lock = [], threading.Lock()

    def tick() -> None:
        for _ in range(40):
            t = dog.tick(1.0, TIMEOUT)
            if t is not None:
                with lock:
                    zeros.append(t)

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30.0)
    assert len(zeros) == 50 and all(t.zero for t in zeros)
