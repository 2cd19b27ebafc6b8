"""bench/gpu_check.py --tiny: every section of the device check runs on the CPU and reports every field.

It runs as the GPU machine runs it (`PYTHONPATH=. python3 bench/gpu_check.py ...`), with `tensordict` and `rosbags`
made unimportable: that image does not have them, so nothing the check imports may need them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCKED = ("tensordict", "rosbags")
RUN = """
import runpy, sys
for name in {blocked!r}:
    sys.modules[name] = None  # `import name` now raises ImportError, as on the GPU machine
sys.argv = ["bench/gpu_check.py"] + {args!r}
runpy.run_path("bench/gpu_check.py", run_name="__main__")
"""


def run_check(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = RUN.format(blocked=BLOCKED, args=list(args))
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu_check") / "tiny.json"
    done = run_check("--tiny", "--repeats", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "correctness.ok" in done.stdout  # the printed table
    return json.loads(out.read_text())


def test_every_section_is_reported(report):
    assert {
        "correctness",
        "plan_paper_budget",
        "plan_wrapper_budget",
        "budget_check",
        "sync_free",
        "train_step",
    } <= set(report)
    assert report["device"]["device"] == "cpu" and report["device"]["tiny"] is True


def test_correctness_section(report):
    c = report["correctness"]
    assert "error" not in c, c
    for key in ("encoder", "predictor", "cached_vs_uncached"):
        assert 0 <= c[key]["max_abs_diff"] <= c[key]["tolerance"], (key, c[key])
    ranking = c["bf16_ranking"]
    assert ranking["spearman"] >= 0.9 and ranking["fp32_best_in_bf16_topk"] and ranking["ok"], ranking
    assert c["ok"] is True


@pytest.mark.parametrize("key, horizon, samples", [("plan_paper_budget", 1, 800), ("plan_wrapper_budget", 2, 400)])
def test_plan_sections(report, key, horizon, samples):
    section = report[key]
    assert section["budget"]["horizon"] == horizon and section["budget"]["samples"] == samples
    for precision in ("bf16", "fp32_tf32"):
        plan = section[precision]
        assert "error" not in plan, plan
        assert plan["seconds_per_plan"] > 0 and plan["timed_plans"] == 1
        assert plan["samples_evaluated"] == samples * section["budget"]["iterations"]
        assert 1 <= plan["rollout_chunk"] <= samples and plan["estimate_bytes"] <= plan["memory_limit_bytes"]
        assert 0 < plan["fraction_of_bf16_matmul_peak"] and plan["predictor_tflop_per_plan"] > 0
        # GPU-only figures are recorded as not applicable on the CPU
        assert plan["gpu_peak_bytes"] is None and plan["plan_peak_within_estimate"] is None
    assert report["device"]["gpu_fields"].startswith("not applicable")


def test_budget_and_sync_sections(report):
    checks = report["budget_check"]
    for precision in ("bf16", "fp32_tf32"):
        assert checks[precision]["paper"] == {"accepted": True, "refusal": None}
        assert checks[precision]["wrapper"] == {"accepted": True, "refusal": None}
    assert checks["ok"] is True
    assert report["sync_free"]["ok"] is None and "not applicable" in report["sync_free"]["not_applicable"]


def test_train_step_section(report):
    """Filled by vjepa2_core.training.gpu_steps.train_step_report (issue 24's training half)."""
    step = report["train_step"]
    assert "error" not in step, step
    assert len(step) > 1


def test_the_full_check_needs_a_gpu(tmp_path):
    done = run_check("--out", str(tmp_path / "x.json"), timeout=300)
    assert done.returncode == 2 and "gpu_check.py: error:" in done.stderr, done.stderr[-2000:]
