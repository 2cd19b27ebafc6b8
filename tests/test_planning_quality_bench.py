"""bench/planner_quality.py on one real simulator pair with the shipped model: JSON, PNG and argument errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("planner_quality", REPO / "bench" / "planner_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # loads the sim and its model: ~40 s on the busy shared CPU
def test_quality_bench_on_a_sim_pair_writes_json_and_png(tmp_path):
    out = tmp_path / "pq"
    args = ["--out", str(out), "--scenes", "sim", "--sim-pairs", "1", "--planners", "cem,gradient"]
    assert _bench().main(args + ["--budgets", "0.01,0.05", "--threads", "1"]) == 0
    report = json.loads((out / "planner_quality.json").read_text())
    assert (out / "planner_quality.png").stat().st_size > 1000
    assert len(report["rows"]) == 2 * 2  # planners x budgets
    for row in report["rows"]:
        assert row["iterations"] >= 1 and row["wall_s"] > 0 and row["plan_to_goal_cm"] >= 0
        assert row["energy"] > 0 and row["gain_over_hold"] == pytest.approx(row["gain_over_hold"])
    assert set(report["summary"]["sim"]) == {"cem", "gradient"}
    assert set(report["summary"]["sim"]["cem"]) == {"0.01", "0.05"}


@pytest.mark.parametrize(
    "bad", [["--planners", "newton"], ["--budgets", "0"], ["--budgets", "x"], ["--scenes", "moon"]]
)
def test_quality_bench_rejects_bad_arguments(bad, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _bench().main(bad)
    assert exit_info.value.code == 2 and "error" in capsys.readouterr().err
