"""bench/plan_bench.py on the reference AC fixture: the fixed JSON keys are present and consistent.

The script runs as a user runs it; its measurements (`vjepa2_core.planning.benchmark`) are imported."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_script

from vjepa2_core.planning import benchmark

SCRIPT = "bench/plan_bench.py"


def _report(args: list[str]) -> dict:
    """bench/plan_bench.py ARGS --json: it must succeed; its JSON report."""
    proc = run_script(SCRIPT, args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_bench_json_on_fixture_checkpoint(fixtures_dir):
    args = ["--ac-checkpoint", str(fixtures_dir / "ac_predictor.pt"), "--json", "--repeats", "2"]
    args += [
        "--samples",
        "8",
        "--topk",
        "2",
        "--iterations",
        "2",
        "--horizon",
        "3",
        "--threads",
        "1",
        "--max-horizon",
        "2",
    ]
    report = _report(args)
    for key in (
        "median_s",
        "uncached_median_s",
        "cache_speedup",
        "outside_predictor_fraction",
        "fraction_of_matmul_peak",
    ):
        assert key in report and report[key] > 0
    assert report["cache_speedup"] == pytest.approx(report["uncached_median_s"] / report["median_s"])
    assert report["speedup_over_reference_path"] == pytest.approx(
        report["reference_path_median_s"] / report["median_s"]
    )
    assert len(report["all_runs"]["reference"]) == 2 and len(report["all_runs"]["cached_without_native"]) == 2
    assert report["native_kernel_speedup"] > 0
    peaks = report["matmul_peak_by_kernel_gflops_per_s"]
    assert "torch.mm" in peaks and report["matmul_peak_gflops_per_s"] >= max(peaks.values()) * (1 - 1e-9)
    # each repeat is compared with the peak measured just before it; the fraction is the median of those ratios
    flops = report["predictor_gflop_per_search"]
    ratios = sorted(
        flops / run["predictor"] / p["matmul_gflops_per_s"]
        for run, p in zip(report["all_runs"]["cached"], report["peak_runs"])
    )
    assert len(ratios) == 2 and report["fraction_of_matmul_peak"] == pytest.approx(sum(ratios) / 2)
    assert 0 < report["outside_predictor_fraction"] < 1
    assert report["model"]["tokens_per_frame"] == 16 and report["model"]["predictor_embed_dim"] == 64
    split = report["split_s"]
    assert split["predictor"] > 0 and split["encoder"] > 0
    assert split["encoder"] + split["predictor"] <= report["median_s"] * 1.001
    assert len(report["all_runs"]["cached"]) == 2
    assert report["same_seed_same_plan"] is True
    assert report["search_sync_free"] == {"cached": None, "uncached": None}  # only checked on CUDA
    assert 0 < report["fraction_of_shape_peak"] and report["shape_matmul_gflops_per_s"] > 0
    scaling = report["horizon_scaling"]
    assert [row["horizon"] for row in scaling["rows"]] == [1, 2] and scaling["slope_s_per_step"] != 0
    assert all(len(row["all_s"]) == 2 and row["median_s"] > 0 for row in scaling["rows"])


def test_bench_runs_in_bf16_against_the_bf16_peak():
    """Where the CPU has bf16 matmuls; elsewhere (AVX2-only: emulated, ~9x slower) it refuses, saying why."""
    from vjepa2_core.models.cpu_kernels import onednn_bf16_available

    args = ["--json", "--precision", "bf16", "--repeats", "1", "--threads", "1", "--max-horizon", "0"]
    args += ["--samples", "8", "--topk", "2", "--iterations", "1", "--horizon", "2"]
    if not onednn_bf16_available():
        stop = run_script(SCRIPT, args)
        assert stop.returncode == 2 and "no bf16 matmuls" in stop.stderr
        return
    report = _report(args)
    assert report["precision"] == "bf16" and report["same_seed_same_plan"]
    assert report["median_s"] > 0 and 0 < report["fraction_of_shape_peak"]


def test_bench_flop_count_matches_hand_count():
    from vjepa2_core.models import build_reference_model

    pred = build_reference_model(
        "ac_predictor",
        img_size=32,
        patch_size=16,
        num_frames=4,
        embed_dim=32,
        predictor_embed_dim=16,
        depth=1,
        num_heads=1,
    )
    # 4 patches + 2 cond tokens; frame 1 attends to 12 tokens; hidden 64
    n, dp, ctx = 6, 16, 12
    layer = 2 * n * dp * (3 * dp + dp + 2 * 64) + 4 * n * ctx * dp
    io = 2 * 4 * dp * 2 * 32 + 2 * 2 * 7 * dp
    assert benchmark.predictor_flops(pred, batch=3, past_frames=1) == 3 * (layer + io)


def test_bench_rejects_a_negative_horizon_sweep():
    exit_info = run_script(SCRIPT, ["--max-horizon", "-1"])
    assert exit_info.returncode == 2 and "error" in exit_info.stderr


def test_bench_reports_a_missing_checkpoint(tmp_path):
    proc = run_script(SCRIPT, ["--ac-checkpoint", str(tmp_path / "none.pt"), "--repeats", "1"])
    assert proc.returncode == 2
    assert "error" in proc.stderr


def test_bench_takes_a_registry_models_shapes_without_a_file():
    args = ["--model", "vit_ac_tiny", "--json", "--repeats", "1", "--threads", "1", "--max-horizon", "0"]
    args += ["--samples", "8", "--topk", "2", "--iterations", "1", "--horizon", "2"]
    report = _report(args)
    assert report["model"]["source"] == "vit_ac_tiny (random weights)" and report["model"]["tokens_per_frame"] == 16
    assert report["rollout_chunk"] == 8  # all samples in one rollout: they fit
    assert report["gpu_peak_bytes"] is None and report["gpu_reserved_peak_bytes"] is None  # CUDA only
    stop = run_script(SCRIPT, ["--model", "vit_ac_nonesuch"])
    assert stop.returncode == 2 and "unknown 'vit_ac_nonesuch'" in stop.stderr


def test_a_horizon_out_of_memory_is_reported_and_the_sweep_goes_on(monkeypatch):
    """A CUDA out-of-memory error (raised here by a planner told it ran out: no GPU to exhaust) at horizon 2."""
    import torch

    from vjepa2_core.planning import CEMPlanner, WorldModel

    wm = WorldModel.random("vit_ac_tiny", seed=0)
    real = CEMPlanner.plan_images

    def plan_images(self, *args, **kwargs):
        if self.config.horizon == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(CEMPlanner, "plan_images", plan_images)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)  # nothing to empty without CUDA
    image = np.zeros((64, 64, 3), np.uint8)
    search = dict(samples=8, topk=2, iterations=1)
    scaling = benchmark.horizon_scaling(wm, search, image, image, torch.zeros(7), max_horizon=3, repeats=1, seed=0)
    rows = {row["horizon"]: row for row in scaling["rows"]}
    assert rows[2] == {"horizon": 2, "error": "out of memory: CUDA out of memory. Tried to allocate 20.00 GiB"}
    assert rows[1]["median_s"] > 0 and rows[3]["median_s"] > 0  # the other horizons are still measured
    assert scaling["slope_s_per_step"] is not None  # fitted through the two that ran
