"""SteadyExecutor: the planner node's executor queues a ready callback once while the workers are busy, and its spin
thread waits instead of looping (rclpy 9.1's MultiThreadedExecutor re-queues it on every turn: ros2/rclpy#1452)."""

from __future__ import annotations

import threading
import time

import pytest

pytestmark = pytest.mark.ros


def run_blocked_pool(executor_cls, wakes: int = 200) -> dict:
    """Two workers held by two callbacks, a 100 Hz timer waiting for a worker while the executor is woken `wakes`
    times (as each finished callback of a busy node wakes it): how often was something queued in the pool, how
    many futures were kept, how often did the waiting timer run."""
    import rclpy
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("steady_executor_test", context=context)
    release, holding, ticks = threading.Event(), threading.Semaphore(0), []

    def hold() -> None:
        holding.release()
        release.wait(10.0)

    holders = [node.create_timer(0.01, hold, callback_group=MutuallyExclusiveCallbackGroup()) for _ in range(2)]
    executor = executor_cls(num_threads=2, context=context)
    executor.add_node(node)
    submits = [0]
    submit = executor._executor.submit

    def counting_submit(*args, **kwargs):
        submits[0] += 1
        return submit(*args, **kwargs)

    executor._executor.submit = counting_submit
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        assert holding.acquire(timeout=10.0) and holding.acquire(timeout=10.0), "the holders never ran"
        for timer in holders:
            timer.cancel()
        node.create_timer(
            0.01, lambda: ticks.append(time.monotonic()), callback_group=MutuallyExclusiveCallbackGroup()
        )
        start = submits[0]
        for _ in range(wakes):
            executor.wake()
            time.sleep(0.002)
        stats = {"submits": submits[0] - start, "futures": len(executor._futures), "ticks_blocked": len(ticks)}
        release.set()
        deadline = time.monotonic() + 10.0
        while len(ticks) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        stats["ticks_after"] = len(ticks)
        return stats
    finally:
        release.set()
        executor.shutdown(timeout_sec=2.0)
        spinner.join(5.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def test_a_callback_waiting_for_a_worker_is_queued_once_and_runs_when_one_is_free():
    from vjepa2_ros.ros_utils import SteadyExecutor

    stats = run_blocked_pool(SteadyExecutor)
    assert stats["ticks_blocked"] == 0, stats  # both workers were held
    # the waiting timer's task was queued once (stock rclpy 9.1: once per wake, ~200 times)
    assert stats["submits"] <= 2 and stats["futures"] <= 4, stats
    assert stats["ticks_after"] >= 5, stats  # and it runs, at its rate, once a worker is free
