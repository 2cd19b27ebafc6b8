"""The demo (`make demo`) runs to completion: sim and planner as separate processes over DDS, a ReachGoal with the
shipped world model, a saved strip. Reaching itself is measured by tests/test_sim_shipped_model.py and sim-eval.
"""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import pytest

from vjepa2_ros.sim.paths import SHIPPED_MODEL

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_demo_runs_to_completion(tmp_path):
    assert SHIPPED_MODEL.is_file(), "the demo's default model must ship with the repository"
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "vjepa2_ros.sim.demo", "--max-steps", "3", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=540, env=os.environ.copy())
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    assert "[demo] step   1" in res.stdout and "final distance" in res.stdout
    strip = cv2.imread(str(out / "demo_strip.png"))
    assert strip is not None and strip.shape[1] >= 3 * strip.shape[0], "start | steps | final | goal"
    assert (out / "sim.log").is_file() and (out / "planner.log").is_file()


def test_demo_missing_model_is_a_clear_error(tmp_path):
    cmd = [sys.executable, "-m", "vjepa2_ros.sim.demo", "--model", str(tmp_path / "none.pt"), "--out", str(tmp_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "not found" in res.stderr and "Traceback" not in res.stderr
