"""The planner node's statistics (vjepa2_core.planning.stats): counters and the diagnostics values, no ROS."""

from __future__ import annotations

import threading

from vjepa2_core.planning import safety
from vjepa2_core.planning.gate import INACTIVE
from vjepa2_core.planning.inputs import Observation
from vjepa2_core.planning.stats import COUNTERS, ERROR, OK, WARN, NodeStats, summary


def test_counters_start_at_zero_and_count_exactly_under_threads():
    stats = NodeStats()
    assert stats.counts == dict.fromkeys(COUNTERS, 0)
    threads = [threading.Thread(target=lambda: [stats.count("commands") for _ in range(1000)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30.0)
    assert stats.counts["commands"] == 4000 and stats.count("commands") == 4001


def test_values_report_the_last_plan_stop_clamps_and_drops():
    stats = NodeStats()
    obs = Observation(image_time=9.5, pose_time=None)
    v = stats.values(obs, [], now=10.0, goal_active=False, planning=False)
    assert list(v)[: len(COUNTERS)] == list(COUNTERS)
    assert v["blocking"] == v["last_stop_reasons"] == v["last_clamps"] == v["last_dropped"] == "none"
    assert v["camera_age_s"] == "0.500" and v["state_age_s"] == "never" and v["last_energy"] == "nan"
    stats.planned(0.123456, 1.5)
    stats.dropped([safety.STOPPED])
    stats.safety_stop([safety.STALE_CAMERA, safety.STALE_STATE])
    v = stats.values(obs, [safety.STALE_CAMERA], now=10.0, goal_active=True, planning=True)
    assert v["plans"] == 1 and v["dropped_commands"] == 1 and v["safety_stops"] == 1
    assert v["last_energy"] == "0.12346" and v["last_plan_time_s"] == "1.500"
    assert v["last_stop_reasons"] == "stale_camera,stale_state" and v["last_dropped"] == "stopped"
    assert v["blocking"] == "stale_camera" and v["goal_active"] is True and v["planning"] is True
    stats.stepped([safety.CLAMPED_STEP])
    v = stats.values(obs, [], now=10.0, goal_active=False, planning=False)
    assert v["last_stop_reasons"] == "none" and v["last_clamps"] == safety.CLAMPED_STEP
    stats.stopped([safety.STOPPED])
    assert stats.values(obs, [], 10.0, False, False)["last_stop_reasons"] == "stopped"
    assert stats.counts["safety_stops"] == 1  # a requested stop is reported, not counted as a safety stop


def test_summary_levels():
    assert summary([]) == (OK, "ready")
    assert summary([safety.STOPPED]) == (WARN, "stopped (call ~/resume)")
    assert summary([INACTIVE, safety.NO_CAMERA]) == (WARN, "inactive (lifecycle): inactive, no_camera")
    assert summary([safety.STOPPED, safety.STALE_CAMERA]) == (ERROR, "commands blocked: stopped, stale_camera")
