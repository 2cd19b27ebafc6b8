"""The send-time gate and pose plausibility (vjepa2_core.planning.gate / plausibility): pure Python, no ROS."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vjepa2_core.planning import safety
from vjepa2_core.planning.gate import GOAL_ENDED, INACTIVE, SHUTTING_DOWN, CommandGate
from vjepa2_core.planning.plausibility import CONSISTENT_POSES, JUMP_MARGIN, PoseTracker, max_plausible_move
from vjepa2_core.planning.safety import SafetyLimits

LIMITS = SafetyLimits(max_translation=0.04)
STATE = np.array([0.3, 0.0, 0.4, 0.0, 0.0, 0.0, 0.5])
STEP = np.array([0.03, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])


def _decide(gate: CommandGate, episode: int, *, cancelled=False, inputs=(), limits=LIMITS, action=STEP):
    return gate.decide(
        episode=episode, cancelled=cancelled, state=STATE, action=action, input_reasons=list(inputs), limits=limits
    )


def _active_gate() -> tuple[CommandGate, int]:
    gate = CommandGate()
    gate.activate()
    return gate, gate.begin()


def test_a_current_command_passes_limited_by_the_limits_given_at_send_time():
    gate, episode = _active_gate()
    ok = _decide(gate, episode)
    assert ok.allowed and ok.reasons == [] and np.allclose(ok.action, STEP)
    tight = _decide(gate, episode, limits=SafetyLimits(max_translation=0.01))  # tightened after the plan
    assert tight.allowed and np.isclose(np.linalg.norm(tight.action[:3]), 0.01)
    assert safety.CLAMPED_STEP in tight.notes


@pytest.mark.parametrize(
    "end, expected",
    [
        (lambda g: g.stop(), [safety.STOPPED, GOAL_ENDED]),
        (lambda g: g.deactivate(), [INACTIVE, GOAL_ENDED]),
        (lambda g: g.end(SHUTTING_DOWN), [GOAL_ENDED, SHUTTING_DOWN]),
        (lambda g: g.begin(), [GOAL_ENDED]),  # a newer goal
    ],
)
def test_an_ended_episode_never_sends_again(end, expected):
    gate, episode = _active_gate()
    end(gate)
    dropped = _decide(gate, episode)
    assert not dropped.allowed and dropped.action is None and dropped.reasons == expected
    gate.activate(), gate.resume()  # deactivate + activate, stop + resume: the old goal stays over
    again = _decide(gate, episode)
    assert not again.allowed and GOAL_ENDED in again.reasons
    assert gate.ended(episode) and not gate.ended(gate.begin())


def test_cancel_inputs_and_workspace_block_at_send_time():
    gate, episode = _active_gate()
    assert _decide(gate, episode, cancelled=True).reasons == [GOAL_ENDED]
    stale = _decide(gate, episode, inputs=[safety.STALE_CAMERA, "pose_jump"])
    assert not stale.allowed and stale.reasons == [safety.STALE_CAMERA, "pose_jump"]
    far = gate.decide(
        episode=episode, cancelled=False, state=STATE + [5, 0, 0, 0, 0, 0, 0], action=STEP, input_reasons=[],
        limits=LIMITS,
    )  # fmt: skip
    assert not far.allowed and far.reasons == [safety.OUTSIDE_WORKSPACE]


def test_inactive_gate_blocks_and_reports_why():
    gate = CommandGate()
    episode = gate.begin()
    assert gate.blocking() == [INACTIVE]
    assert _decide(gate, episode).reasons == [INACTIVE]
    gate.activate()
    gate.stop()
    assert gate.blocking() == [safety.STOPPED]
    assert gate.resume() and not gate.resume()


def test_wait_ended_wakes_at_once_when_the_episode_ends():
    gate, episode = _active_gate()
    assert gate.wait_ended(episode, 0.01) == ""
    timer = threading.Timer(0.05, gate.stop)
    timer.start()
    assert gate.wait_ended(episode, 60.0) == safety.STOPPED  # long before the timeout
    timer.join()


def test_pose_jump_blocks_until_poses_are_consistent_again():
    tracker, rate = PoseTracker(), 10.0
    t, p = 0.0, np.array([0.3, 0.0, 0.4])
    for _ in range(5):  # a moving arm: one max step per control period, poses at 30 Hz
        t, p = t + 1 / 30, p + [LIMITS.max_translation / 3, 0, 0]
        assert not tracker.update(p, t, LIMITS, rate)
    assert not tracker.jumping
    assert tracker.update(p + [1.0, 0, 0], t + 1 / 30, LIMITS, rate)  # a 1 m glitch
    assert tracker.jumping and tracker.jumps == 1
    assert tracker.update(p, t + 2 / 30, LIMITS, rate)  # and back: a second jump
    for k in range(CONSISTENT_POSES):
        assert tracker.jumping
        assert not tracker.update(p, t + (3 + k) / 30, LIMITS, rate)
    assert not tracker.jumping and tracker.jumps == 2


def test_plausible_move_scales_with_time_and_never_falls_below_one_period():
    one_period = JUMP_MARGIN * LIMITS.max_translation
    assert max_plausible_move(0.001, LIMITS, 10.0) == pytest.approx(one_period)  # bunched-up messages
    assert max_plausible_move(1.0, LIMITS, 10.0) == pytest.approx(10 * one_period)  # after a gap
