"""The planner node's input store (vjepa2_core.planning.inputs): latest inputs, staleness, the fresh-data wait.
Pure Python, no ROS; the waits are driven by real threads and woken by the store's condition variable."""

from __future__ import annotations

import threading

import numpy as np

from vjepa2_core.planning import safety
from vjepa2_core.planning.gate import GOAL_ENDED, INACTIVE, SHUTTING_DOWN
from vjepa2_core.planning.inputs import InputStore
from vjepa2_core.planning.plausibility import CONSISTENT_POSES, POSE_JUMP
from vjepa2_core.planning.safety import SafetyLimits

LIMITS = SafetyLimits(max_translation=0.04, stale_timeout=0.5)
IMAGE = np.zeros((4, 4, 3), np.uint8)
POSE = np.array([0.3, 0.0, 0.4, 0.0, 0.0, 0.0])
DEADLINE = 30.0  # s: generous on a loaded machine; a correct wait returns long before


def _filled(now: float, gripper: bool = False) -> InputStore:
    store = InputStore(gripper=gripper)
    store.put_image(IMAGE, now=now)
    store.put_pose(POSE, "base", LIMITS, 2.0, now=now)
    return store


def test_snapshot_is_a_copy_of_the_latest_inputs():
    store = _filled(10.0)
    store.put_gripper(0.25, now=10.0)
    obs = store.snapshot()
    assert obs.image is IMAGE and obs.frame_id == "base" and obs.image_time == 10.0
    assert np.allclose(obs.state(), [*POSE, 0.25])
    store.put_pose(POSE + 0.01, "other", LIMITS, 2.0, now=11.0)
    assert obs.frame_id == "base" and obs.pose_time == 10.0  # the copy does not change under the reader


def test_assess_reports_stale_and_missing_inputs_and_the_gate_reasons():
    store = InputStore(gripper=False)
    assert store.assess([], LIMITS, now=1.0)[1] == [safety.NO_CAMERA, safety.NO_STATE]
    store = _filled(10.0)
    assert store.assess([], LIMITS, now=10.1)[1] == []
    assert safety.STALE_CAMERA in store.assess([], LIMITS, now=11.0)[1]  # older than stale_timeout
    reasons = store.assess([INACTIVE, safety.STOPPED], LIMITS, now=10.1)[1]
    assert reasons[0] == INACTIVE and safety.STOPPED in reasons


def test_a_wired_gripper_counts_toward_the_state_age():
    store = _filled(10.0, gripper=True)
    assert store.assess([], LIMITS, now=10.1)[1] == [safety.NO_STATE]  # the gripper was never received
    store.put_gripper(0.0, now=9.0)
    assert safety.STALE_STATE in store.assess([], LIMITS, now=9.8)[1]  # the older of pose and gripper counts
    store.put_gripper(0.0, now=10.0)
    assert store.assess([], LIMITS, now=10.1)[1] == []


def test_a_pose_jump_blocks_until_poses_are_consistent_again():
    store = _filled(10.0)
    jumped = POSE + [0.5, 0, 0, 0, 0, 0]  # half a metre in a tenth of a second
    assert store.put_pose(jumped, "base", LIMITS, 2.0, now=10.1)
    assert store.assess([], LIMITS, now=10.1)[1] == [POSE_JUMP]
    for i in range(CONSISTENT_POSES):
        assert not store.put_pose(jumped, "base", LIMITS, 2.0, now=10.2 + 0.01 * i)
        assert (store.assess([], LIMITS, now=10.25)[1] == []) == (i == CONSISTENT_POSES - 1)


def test_wait_fresh_wakes_when_both_camera_and_pose_arrive():
    """The waiter is inside its wait (its `ended` check ran with the store's lock held) before the inputs come;
    an image alone does not end it, image and pose do, and it never needs its timeout."""
    store = _filled(1.0)
    waiting, result = threading.Semaphore(0), []
    since = 5.0

    def ended() -> str:
        waiting.release()  # called once per look at the inputs, with the store's lock held
        return ""

    waiter = threading.Thread(target=lambda: result.append(store.wait_fresh(since, DEADLINE, ended)))
    waiter.start()
    assert waiting.acquire(timeout=DEADLINE)
    store.put_image(IMAGE, now=6.0)  # takes the lock: the waiter is inside wait() now
    assert waiting.acquire(timeout=DEADLINE)  # woken, looked again: the pose is still old
    assert waiter.is_alive()
    store.put_pose(POSE, "base", LIMITS, 2.0, now=6.0)
    waiter.join(DEADLINE)
    assert not waiter.is_alive() and result == [[]]


def test_wait_fresh_times_out_with_what_is_missing():
    store = _filled(1.0)
    assert store.wait_fresh(5.0, 0.0) == [safety.STALE_CAMERA, safety.STALE_STATE]
    store.put_image(IMAGE, now=6.0)
    assert store.wait_fresh(5.0, 0.01) == [safety.STALE_STATE]


def test_wait_fresh_returns_the_episode_end_and_close_ends_every_wait():
    store = _filled(1.0)
    over = threading.Event()
    ended = threading.Thread(
        target=lambda: results.append(store.wait_fresh(5.0, DEADLINE, lambda: GOAL_ENDED if over.is_set() else ""))
    )
    closed = [threading.Thread(target=lambda: results.append(store.wait_fresh(5.0, DEADLINE))) for _ in range(3)]
    results: list[list[str]] = []
    ended.start()
    over.set()
    ended.join(DEADLINE)
    assert not ended.is_alive() and results == [[GOAL_ENDED]]
    for t in closed:
        t.start()
    store.close()
    for t in closed:
        t.join(DEADLINE)
    assert not any(t.is_alive() for t in closed) and results[1:] == [[SHUTTING_DOWN]] * 3
    assert store.wait_fresh(5.0, DEADLINE) == [SHUTTING_DOWN]  # after close: at once


def test_concurrent_writers_never_tear_a_snapshot():
    """Poses and their frame ids are written together: a reader never sees one writer's pose with another's frame."""
    store = InputStore(gripper=False)
    stop = threading.Event()

    def write(offset: int) -> None:
        for i in range(2000):
            value = offset + i
            store.put_pose(np.full(6, float(value)), str(value), LIMITS, 2.0, now=float(i))
            store.put_image(IMAGE)

    writers = [threading.Thread(target=write, args=(k * 10_000,)) for k in range(3)]
    seen = []

    def read() -> None:
        while not stop.is_set():
            obs = store.snapshot()
            if obs.pose is not None:
                seen.append(obs.pose[0] == float(obs.frame_id))

    reader = threading.Thread(target=read)
    reader.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join(DEADLINE)
    stop.set()
    reader.join(DEADLINE)
    assert seen and all(seen)
