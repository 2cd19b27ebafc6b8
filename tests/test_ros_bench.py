"""bench/ros_bench.py end to end (planner node + bench robot over DDS): it runs on the shipped node and reports a
latency for every plan and every command it asked for."""

from __future__ import annotations

import json
import math

import pytest
from conftest import run_script

pytestmark = pytest.mark.ros


def test_ros_bench_measures_every_call_and_step(tmp_path):
    from ros_helpers import ensure_interfaces

    ensure_interfaces()
    n, out = 4, tmp_path / "ros_bench.json"
    proc = run_script("bench/ros_bench.py", ["--n", str(n), "--samples", "8", "--json", str(out)], timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["reach_goal"]["steps"] == n + 3, report["reach_goal"]
    for name in ("service_round_trip", "service_planning_time", "service_overhead", "camera_to_command"):
        assert report[name]["n"] == n, (name, report[name])
        assert math.isfinite(report[name]["median_ms"]) and report[name]["p95_ms"] >= report[name]["median_ms"]
    assert report["service_round_trip"]["median_ms"] > report["service_planning_time"]["median_ms"] > 0


def test_ros_bench_reports_no_samples_as_an_error_not_a_statistic():
    """An episode that ends before its measured steps is a clear error (it was an IndexError in np.percentile)."""
    from vjepa2_ros.latency import NoSamples, summary

    with pytest.raises(NoSamples, match="no camera-to-command pairs measured: reach_goal sent 1 commands"):
        summary([], "camera-to-command pairs", "reach_goal sent 1 commands in 1 steps (stale_camera)")
    assert summary([0.001, 0.003], "pairs")["n"] == 2
