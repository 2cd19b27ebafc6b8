"""Planning benchmark: wall time of one CEM planning call, its time split, and what the K/V cache buys.

One planning call = encode the current image (the goal encoding is cached) + the CEM search, as the ROS planner
node runs it. For the same seeds the search is also run with caching off (the reference's full recomputation per
step); both are interleaved so that CPU contention hits them alike. The predictor's useful FLOP rate (cached search)
is compared with this machine's fp32 matmul rate measured in the same run.

    python bench/plan_bench.py --json
    python bench/plan_bench.py --ac-checkpoint ../shared/fixtures/vjepa2_reference/ac_predictor.pt --json
    python bench/plan_bench.py --model vit_ac_giant --device cuda --samples 800 --iterations 10 --horizon 1 --json

JSON keys read by tools: median_s, uncached_median_s, cache_speedup, reference_path_median_s and
speedup_over_reference_path (the uncached search on the reference's kernels, F.linear and SDPA: the reference's
algorithm and cost), native_kernel_speedup (the cached search with the native C kernels off, over it with them
on), outside_predictor_fraction, fraction_of_matmul_peak (against the best of torch.mm and oneDNN on a 2048^3
matmul), fraction_of_shape_peak (against the predictor's own linear shapes, timed alone; both peaks are measured
before every repeat and each repeat is compared with its own, so that a shared CPU's drift cancels),
horizon_scaling (cached search time for horizons 1..--max-horizon, with a straight-line fit; a horizon that runs
out of memory is reported as such, the others still are). On CUDA: gpu_peak_bytes (the timed plans' peak of
allocated memory) and gpu_reserved_peak_bytes; the CPU-only comparisons (the reference's kernels, the native C
kernels off) are not run there and reported as null. `--model NAME` takes a registry model's shapes with random
weights (no checkpoint file), e.g. the released ViT-g AC as `vit_ac_giant`, built directly on the device.

The issue's 192-wide config: --pred-dim 192 --pred-depth 4 --pred-heads 6 --samples 100 --iterations 5 --topk 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import nullcontext
from typing import Any

import torch

from vjepa2_core.hub.registry import available_models
from vjepa2_core.models.cpu_kernels import (
    onednn_bf16_available,
    reference_kernels,
    without_native_kernels,
)
from vjepa2_core.planning.benchmark import (
    DEFAULT_MODEL,
    build_world_model,
    gpu_memory,
    horizon_scaling,
    matmul_rate,
    search_flops,
    search_is_sync_free,
    shape_matmul_rate,
)
from vjepa2_core.planning.cem import CEMConfig, CEMPlanner, config_to_dict
from vjepa2_core.planning.world_model import DEFAULT_PRECISION, PRECISIONS, WorldModel
from vjepa2_core.selfcheck import scene

DEFAULT_SEARCH = dict(samples=16, iterations=2, horizon=3, topk=4, repeats=3, seed=0)
Runs = dict[str, list[dict[str, float]]]  # mode -> per repeat: total, encoder, predictor and search seconds
PeakRuns = list[tuple[dict[str, float], float]]  # per repeat: matmul FLOP/s per kernel, the predictor shapes' FLOP/s


def _ratio(a: float | None, b: float) -> float | None:
    return a / b if a is not None else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, then time the planning modes interleaved over `args.repeats` rounds; the JSON report."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    sizes = {key: getattr(args, key) for key in DEFAULT_MODEL}
    wm, source = build_world_model(args.ac_checkpoint, args.model, args.device, args.precision, args.seed, **sizes)
    size = max(96, wm.crop_size)
    current, goal = scene((size // 5, size // 3), size), scene((size // 2, size // 4), size)
    state = torch.tensor([0.45, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0])
    search = dict(horizon=args.horizon, samples=args.samples, topk=args.topk, iterations=args.iterations)
    planners = {mode: CEMPlanner(wm, CEMConfig(**search, cached=mode == "cached")) for mode in ("cached", "uncached")}
    for planner in planners.values():  # warm-up (allocations, RoPE tables, goal encoding)
        planner.plan_images(current, state, goal, seed=args.seed)

    sync_free = {mode: search_is_sync_free(planner, current, goal, state) for mode, planner in planners.items()}
    same_seed = [planners["cached"].plan_images(current, state, goal, seed=args.seed).actions for _ in range(2)]
    modes = {"cached": planners["cached"], "uncached": planners["uncached"]}
    if wm.device.type == "cpu":  # the native kernels and oneDNN are CPU code: on a GPU these would measure nothing
        # "reference": the uncached search on the reference's kernels (F.linear, SDPA): its algorithm and cost
        # "cached_without_native": the cached search with the native C kernels off (what they buy)
        modes.update(reference=planners["uncached"], cached_without_native=planners["cached"])
    contexts = {"reference": reference_kernels, "cached_without_native": without_native_kernels}
    runs, peak_runs = time_modes(wm, modes, contexts, (current, state, goal), args)
    gpu = gpu_memory(wm.device)  # before the horizon sweep: the peak of the timed plans
    flops = search_flops(wm.predictor, planners["cached"].config)
    sweep = None
    if args.max_horizon:
        sweep = horizon_scaling(wm, search, current, goal, state, args.max_horizon, args.repeats, args.seed)
    return {
        **timing_report(runs, peak_runs, flops),
        **gpu,
        "search_sync_free": sync_free,
        "rollout_chunk": planners["cached"].chunk,
        "same_seed_same_plan": bool(torch.equal(*same_seed)),
        "all_runs": runs,
        "model": {
            "source": source,
            "crop_size": wm.crop_size,
            "tokens_per_frame": wm.tokens_per_frame,
            "predictor_embed_dim": wm.predictor.predictor_embed_dim,
            "predictor_depth": wm.predictor.depth,
            "encoder_embed_dim": wm.predictor.embed_dim,
        },
        "cem": config_to_dict(planners["cached"].config),
        "horizon_scaling": sweep,
        "repeats": args.repeats,
        "device": str(wm.device),
        "precision": wm.precision,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def time_modes(
    wm: WorldModel, modes: dict, contexts: dict, inputs: tuple, args: argparse.Namespace
) -> tuple[Runs, PeakRuns]:
    """`args.repeats` rounds, each measuring the matmul peaks and then one plan per mode (interleaved, so that a
    shared CPU's drift hits every mode and each repeat is compared with its own peaks) -> (Runs, PeakRuns)."""
    current, state, goal = inputs
    if wm.device.type == "cuda":
        torch.cuda.synchronize(wm.device)
        torch.cuda.reset_peak_memory_stats(wm.device)
    wm.profile = True
    runs: Runs = {mode: [] for mode in modes}
    peak_dtype = torch.bfloat16 if wm.precision == "bf16" else torch.float32
    peak_runs: PeakRuns = []
    for r in range(args.repeats):
        peak_runs.append(
            (matmul_rate(wm.device, dtype=peak_dtype, repeats=3), shape_matmul_rate(wm.predictor, args.samples))
        )
        for mode, planner in modes.items():
            wm.reset_stats()
            start = time.perf_counter()
            with contexts.get(mode, nullcontext)():
                result = planner.plan_images(current, state, goal, seed=args.seed + r)
            total = time.perf_counter() - start
            search_s = total - result.timings["encode_s"]
            runs[mode].append(
                dict(total=total, encoder=wm.stats["encoder_s"], predictor=wm.stats["predictor_s"], search=search_s)
            )
    wm.profile = False
    return runs, peak_runs


def timing_report(runs: Runs, peak_runs: PeakRuns, flops: float) -> dict[str, Any]:
    """Medians, speedups, the time split and the predictor's FLOP rate against the peaks of its own repeats."""
    peaks = {name: statistics.median(p[name] for p, _ in peak_runs) for name in peak_runs[0][0]}
    peak = statistics.median(max(p.values()) for p, _ in peak_runs)
    shape_peak = statistics.median(s for _, s in peak_runs)

    def med(mode: str, key: str) -> float | None:
        return statistics.median(run[key] for run in runs[mode]) if mode in runs else None

    median_s, unc_s, ref_s = med("cached", "total"), med("uncached", "total"), med("reference", "total")
    enc_s, pred_s, search_s = med("cached", "encoder"), med("cached", "predictor"), med("cached", "search")
    outside = statistics.median(1 - run["predictor"] / run["search"] for run in runs["cached"])
    return {
        "median_s": median_s,
        "uncached_median_s": unc_s,
        "cache_speedup": unc_s / median_s,
        "search_cache_speedup": med("uncached", "search") / search_s,
        "reference_path_median_s": ref_s,
        "speedup_over_reference_path": ref_s / median_s if ref_s else None,
        "native_kernel_speedup": _ratio(med("cached_without_native", "total"), median_s),
        # best-of timings: on a shared, contended CPU the minimum is the steadier estimate of the cost
        "best_s": min(run["total"] for run in runs["cached"]),
        "uncached_best_s": min(run["total"] for run in runs["uncached"]),
        "cache_speedup_best": min(r["total"] for r in runs["uncached"]) / min(r["total"] for r in runs["cached"]),
        "outside_predictor_fraction": outside,
        # each repeat's predictor rate against the peaks measured just before it, median over repeats
        "fraction_of_matmul_peak": statistics.median(
            flops / run["predictor"] / max(p.values()) for run, (p, _) in zip(runs["cached"], peak_runs)
        ),
        "fraction_of_shape_peak": statistics.median(
            flops / run["predictor"] / s for run, (_, s) in zip(runs["cached"], peak_runs)
        ),
        "shape_matmul_gflops_per_s": shape_peak / 1e9,
        "split_s": {"encoder": enc_s, "predictor": pred_s, "rest": max(0.0, median_s - enc_s - pred_s)},
        "search_median_s": search_s,
        "predictor_gflops_per_s": flops / pred_s / 1e9,
        "matmul_peak_gflops_per_s": peak / 1e9,
        "matmul_peak_by_kernel_gflops_per_s": {name: rate / 1e9 for name, rate in peaks.items()},
        "peak_runs": [
            {"matmul_gflops_per_s": max(p.values()) / 1e9, "shape_gflops_per_s": s / 1e9} for p, s in peak_runs
        ],
        "predictor_gflop_per_search": flops / 1e9,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ac-checkpoint", help="AC predictor file: fixture {config, state_dict} or a project checkpoint")
    p.add_argument("--model", help="registry model with random weights, e.g. vit_ac_giant (no checkpoint file)")
    p.add_argument("--img-size", type=int, default=DEFAULT_MODEL["img_size"])
    p.add_argument("--embed-dim", type=int, default=DEFAULT_MODEL["embed_dim"])
    p.add_argument("--enc-depth", type=int, default=DEFAULT_MODEL["enc_depth"])
    p.add_argument("--enc-heads", type=int, default=DEFAULT_MODEL["enc_heads"])
    p.add_argument("--pred-dim", type=int, default=DEFAULT_MODEL["pred_dim"])
    p.add_argument("--pred-depth", type=int, default=DEFAULT_MODEL["pred_depth"])
    p.add_argument("--pred-heads", type=int, default=DEFAULT_MODEL["pred_heads"])
    for name, value in DEFAULT_SEARCH.items():
        p.add_argument(f"--{name}", type=int, default=value)
    p.add_argument("--max-horizon", type=int, default=5, help="cost-vs-horizon sweep 1..N (0: skip)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default=DEFAULT_PRECISION, choices=PRECISIONS, help="bf16: autocast, bf16 peak")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_horizon < 0 or args.repeats < 1:
        parser.error("--max-horizon must be >= 0 and --repeats >= 1")
    if args.model and args.ac_checkpoint:
        parser.error("give --model or --ac-checkpoint, not both")
    if args.model and args.model not in available_models():
        parser.error(f"--model: unknown {args.model!r}; one of {', '.join(available_models())}")
    if args.precision == "bf16" and args.device == "cpu" and not onednn_bf16_available():
        parser.error("--precision bf16: this CPU has no bf16 matmuls (emulated, ~9x slower than fp32); measure fp32")
    try:
        report = run(args)
    except (ValueError, OSError, KeyError, RuntimeError) as exc:
        print(f"plan_bench: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    split = report["split_s"]
    print(f"model: {report['model']}  device {report['device']} threads {report['threads']}")
    print(f"planning call median {report['median_s'] * 1e3:.1f} ms over {args.repeats} repeats")
    print("  split: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in split.items()))
    print(
        f"uncached median {report['uncached_median_s'] * 1e3:.1f} ms -> cache speedup {report['cache_speedup']:.2f}x"
    )
    if report["reference_path_median_s"] is not None:
        print(
            f"reference path (uncached, F.linear + SDPA) median {report['reference_path_median_s'] * 1e3:.1f} ms -> "
            f"{report['speedup_over_reference_path']:.2f}x"
        )
        print(f"native C kernels off: {report['native_kernel_speedup']:.2f}x slower")
    if report["gpu_peak_bytes"] is not None:
        print(
            f"GPU peak {report['gpu_peak_bytes'] / 2**30:.2f} GiB allocated, rollout chunk {report['rollout_chunk']}"
        )
    print(f"outside predictor: {report['outside_predictor_fraction'] * 100:.1f}% of the search")
    print(
        f"predictor {report['predictor_gflops_per_s']:.1f} GFLOP/s vs matmul {report['matmul_peak_gflops_per_s']:.1f} "
        f"GFLOP/s -> {report['fraction_of_matmul_peak'] * 100:.0f}% of peak "
        f"({report['fraction_of_shape_peak'] * 100:.0f}% of its own linear shapes at "
        f"{report['shape_matmul_gflops_per_s']:.1f} GFLOP/s)"
    )
    if report["horizon_scaling"]:
        scaling = report["horizon_scaling"]
        for row in scaling["rows"]:
            if "error" in row:
                print(f"  horizon {row['horizon']}: {row['error']}")
                continue
            print(
                f"  horizon {row['horizon']}: {row['median_s'] * 1e3:.1f} ms ({row['per_step_s'] * 1e3:.1f} ms/step)"
            )
        if scaling["slope_s_per_step"] is not None:
            print(
                f"  line: {scaling['slope_s_per_step'] * 1e3:.1f} ms/step + {scaling['intercept_s'] * 1e3:.1f} ms, "
                f"max residual {scaling['max_relative_residual'] * 100:.0f}%"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
