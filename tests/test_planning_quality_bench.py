"""bench/planner_quality.py on one real simulator pair with the shipped model: JSON, PNG and argument errors."""

from __future__ import annotations

import json

import pytest
from conftest import run_script


def _bench_exit(args: list[str]) -> int:
    """Run bench/planner_quality.py as a user does; its exit code (its output shown when it fails)."""
    proc = run_script("bench/planner_quality.py", args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.returncode


@pytest.mark.slow  # loads the sim and its model: ~40 s on the busy shared CPU
def test_quality_bench_on_a_sim_pair_writes_json_and_png(tmp_path):
    out = tmp_path / "pq"
    args = ["--out", str(out), "--scenes", "sim", "--sim-pairs", "1", "--planners", "cem,gradient"]
    assert _bench_exit(args + ["--budgets", "0.01,0.05", "--threads", "1"]) == 0
    report = json.loads((out / "planner_quality.json").read_text())
    assert (out / "planner_quality.png").stat().st_size > 1000
    assert len(report["rows"]) == 2 * 2  # planners x budgets
    for row in report["rows"]:
        assert row["iterations"] >= 1 and row["wall_s"] > 0 and row["plan_to_goal_cm"] >= 0
        assert row["energy"] > 0 and row["gain_over_hold"] == pytest.approx(row["gain_over_hold"])
    assert set(report["summary"]["sim"]) == {"cem", "gradient"}
    assert set(report["summary"]["sim"]["cem"]) == {"0.01", "0.05"}


def test_quality_bench_on_the_franka_pair(tmp_path):
    out = tmp_path / "pq"
    args = ["--out", str(out), "--scenes", "franka", "--planners", "cem", "--budgets", "0.01", "--threads", "1"]
    assert _bench_exit(args) == 0
    rows = json.loads((out / "planner_quality.json").read_text())["rows"]
    assert len(rows) == 1 and rows[0]["scene"] == "franka" and rows[0]["energy"] > 0


@pytest.mark.slow  # one simulated reach episode through the node's controller: ~20 s on the busy shared CPU
def test_quality_bench_closed_loop_runs_sim_episodes_per_planner(tmp_path):
    out = tmp_path / "pq"
    args = ["--out", str(out), "--scenes", "none", "--planners", "cem", "--threads", "1"]
    assert _bench_exit(args + ["--closed-loop-episodes", "1", "--closed-loop-budget", "0.05"]) == 0
    loop = json.loads((out / "planner_quality.json").read_text())["closed_loop"]
    assert loop["budget_s"] == 0.05 and loop["seeds"] == [1000, 1000]
    cem = loop["planners"]["cem"]
    assert cem["episodes"] == 1 and 0.0 <= cem["success_rate_3cm"] <= cem["success_rate_5cm"] <= 1.0
    assert 0 < cem["plan_s_per_step"] < 5.0 and cem["mean_final_distance_m"] >= 0


@pytest.mark.parametrize(
    "bad",
    [
        ["--planners", "newton"],
        ["--budgets", "0"],
        ["--budgets", "x"],
        ["--scenes", "moon"],
        ["--scenes", "none"],
        ["--closed-loop-episodes", "-1"],
        ["--closed-loop-budget", "0", "--closed-loop-episodes", "1"],
    ],
)
def test_quality_bench_rejects_bad_arguments(bad):
    proc = run_script("bench/planner_quality.py", bad)
    assert proc.returncode == 2 and "error" in proc.stderr
