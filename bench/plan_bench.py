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
    PackedLinear,
    onednn_bf16_available,
    onednn_linear_available,
    reference_kernels,
    without_native_kernels,
)
from vjepa2_core.planning.cem import CEMConfig, CEMPlanner, config_to_dict
from vjepa2_core.planning.world_model import DEFAULT_PRECISION, PRECISIONS, WorldModel
from vjepa2_core.selfcheck import scene

# -- default predictor/encoder config (a scaled-down V-JEPA 2-AC that keeps the predictor matmul-bound on a CPU)
# (width 512 / head dim 64 like the released predictor's heads, 8x8 patches per frame, 2 blocks: ~80 GFLOP per call)
DEFAULT_MODEL = dict(img_size=128, embed_dim=384, enc_depth=2, enc_heads=6, pred_dim=512, pred_depth=2, pred_heads=8)
DEFAULT_SEARCH = dict(samples=16, iterations=2, horizon=3, topk=4, repeats=3, seed=0)


def build_world_model(args: argparse.Namespace) -> tuple[WorldModel, str]:
    """From --ac-checkpoint (fixture `{config, state_dict}` or a project checkpoint) or the size flags."""
    from vjepa2_core.hub import load_checkpoint, load_fixture_model
    from vjepa2_core.models import build_reference_model

    if args.model:
        return registry_world_model(args), f"{args.model} (random weights)"
    if args.ac_checkpoint:
        data = load_checkpoint(args.ac_checkpoint)
        if "config" not in data or "state_dict" not in data:
            wm = WorldModel.from_checkpoint(args.ac_checkpoint, device=args.device, precision=args.precision)
            return wm, args.ac_checkpoint
        predictor = load_fixture_model(args.ac_checkpoint, "ac_predictor")
        cfg = data["config"]
        img = cfg["img_size"][0] if isinstance(cfg["img_size"], (tuple, list)) else cfg["img_size"]
        # fixtures hold only the predictor: pair it with a random encoder of the matching width and patch size
        enc_kwargs = dict(embed_dim=cfg["embed_dim"], num_heads=max(1, cfg["embed_dim"] // 64), depth=args.enc_depth)
        source = f"{args.ac_checkpoint} (+ random {args.enc_depth}-block encoder)"
    else:
        img, cfg = args.img_size, dict(patch_size=16)
        predictor = build_reference_model(
            "ac_predictor",
            img_size=img,
            patch_size=16,
            num_frames=64,
            tubelet_size=2,
            embed_dim=args.embed_dim,
            predictor_embed_dim=args.pred_dim,
            depth=args.pred_depth,
            num_heads=args.pred_heads,
        )
        enc_kwargs = dict(embed_dim=args.embed_dim, num_heads=args.enc_heads, depth=args.enc_depth)
        source = "random weights"
    encoder = build_reference_model(
        "encoder", img_size=img, patch_size=cfg.get("patch_size", 16), num_frames=64, tubelet_size=2, **enc_kwargs
    )
    return WorldModel(encoder, predictor, crop_size=img, device=args.device, precision=args.precision), source


def registry_world_model(args: argparse.Namespace) -> WorldModel:
    """Registry model `args.model` with random weights, initialised on the device itself (a 1B-parameter encoder
    is not built on the host first)."""
    from vjepa2_core.hub import get_spec
    from vjepa2_core.hub.loading import build_encoder_and_predictor

    with torch.device(args.device):
        encoder, predictor = build_encoder_and_predictor(args.model, seed=args.seed)
    crop = get_spec(args.model).img_size
    return WorldModel(encoder, predictor, crop_size=crop, device=args.device, precision=args.precision)


def predictor_flops(pred: torch.nn.Module, batch: int, past_frames: int) -> float:
    """Useful FLOPs of one `forward_frame` (multiply-add = 2): linear layers plus attention over the cache."""
    dp, de, g2 = pred.predictor_embed_dim, pred.embed_dim, pred.tokens_per_frame
    n = pred.cond_tokens + g2
    ctx = (past_frames + 1) * n
    hidden = pred.predictor_blocks[0].mlp.fc1.out_features
    per_layer = 2 * n * dp * (3 * dp + dp + 2 * hidden) + 4 * n * ctx * dp
    embed, out = 2 * g2 * de * dp, 2 * g2 * dp * de + 2 * pred.cond_tokens * pred.action_embed_dim * dp
    shared = 1 if past_frames == 0 else batch  # frame 0 is one observation for every sample: embedded once
    return batch * (pred.depth * per_layer + out) + shared * embed


def search_flops(pred: torch.nn.Module, cfg: CEMConfig) -> float:
    """Predictor FLOPs of one cached CEM search (all iterations + the final evaluation of the plan)."""
    batches = [cfg.population(i) for i in range(cfg.iterations)] + [1]
    return sum(predictor_flops(pred, b, h) for b in batches for h in range(cfg.horizon))


def matmul_rate(
    device: torch.device, n: int | None = None, repeats: int = 7, dtype: torch.dtype = torch.float32
) -> dict[str, float]:
    """Best observed FLOP/s of an n x n x n matmul in `dtype`, per kernel (torch.mm; oneDNN on a prepacked weight,
    the planner's CPU linears): the machine's practical peak is the best of them."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    kernels = {"torch.mm": lambda: torch.mm(a, b)}
    if device.type == "cpu" and onednn_linear_available():
        layer = PackedLinear(n, n, bias=False, dtype=dtype).requires_grad_(False)  # a @ W^T: the same n^3 GEMM
        kernels["onednn"] = lambda: layer(a)
    rates = {}
    for name, kernel in kernels.items():
        kernel()  # warm-up
        best = float("inf")
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            kernel()
            _sync(device)
            best = min(best, time.perf_counter() - start)
        rates[name] = 2 * n**3 / best
    return rates


def shape_matmul_rate(pred: torch.nn.Module, batch: int, repeats: int = 5) -> float:
    """FLOP/s of the predictor's own linear layers (qkv, proj, fc1, fc2 of one block) on one step's token batch,
    the best of F.linear and the layers' own forward (oneDNN on prepacked weights where the planner uses it)."""
    blk, device = pred.predictor_blocks[0], next(pred.parameters()).device
    dtype = blk.attn.qkv.weight.dtype  # bf16 when the world model runs in bf16
    rows = batch * (pred.cond_tokens + pred.tokens_per_frame)
    x = torch.randn(rows, pred.predictor_embed_dim, device=device, dtype=dtype)
    layers = [blk.attn.qkv, blk.attn.proj, blk.mlp.fc1, blk.mlp.fc2]
    inputs = [x, x, x, torch.randn(rows, blk.mlp.fc1.out_features, device=device, dtype=dtype)]
    flops = sum(2 * i.shape[0] * lin.in_features * lin.out_features for lin, i in zip(layers, inputs))
    kernels = [lambda lin, i: torch.nn.functional.linear(i, lin.weight, lin.bias), lambda lin, i: lin(i)]
    best = float("inf")
    with torch.inference_mode():
        for kernel in kernels:
            for _ in range(repeats + 1):
                _sync(device)
                start = time.perf_counter()
                for lin, i in zip(layers, inputs):
                    kernel(lin, i)
                _sync(device)
                best = min(best, time.perf_counter() - start)
    return flops / best


def horizon_scaling(wm: WorldModel, search: dict, args, current, goal, state) -> dict[str, Any]:
    """Median cached search time per horizon 1..max_horizon, with a least-squares line through the medians."""
    rows = []
    planners = {h: CEMPlanner(wm, CEMConfig(**{**search, "horizon": h})) for h in range(1, args.max_horizon + 1)}
    times: dict[int, list[float]] = {h: [] for h in planners}
    failed: dict[int, str] = {}
    for r in range(args.repeats + 1):  # the first round warms up every horizon
        for h, planner in planners.items():  # interleaved: contention hits every horizon alike
            if h in failed:
                continue
            try:
                result = planner.plan_images(current, state, goal, seed=args.seed + r)
            except torch.cuda.OutOfMemoryError as exc:  # this horizon is reported as failed, the others still run
                failed[h] = f"out of memory: {str(exc).splitlines()[0]}"
                torch.cuda.empty_cache()
                continue
            if r:
                times[h].append(result.timings["optimize_s"] + result.timings["final_eval_s"])
    for h, ts in times.items():
        if h in failed:
            rows.append({"horizon": h, "error": failed[h]})
            continue
        med = statistics.median(ts)
        rows.append({"horizon": h, "median_s": med, "per_step_s": med / h, "all_s": ts})
    return {"rows": rows, **_line_fit([r for r in rows if "median_s" in r])}


def _line_fit(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Least-squares line through (horizon, median_s) with its largest relative residual (None: under 2 rows)."""
    if len(rows) < 2:
        return {"slope_s_per_step": None, "intercept_s": None, "max_relative_residual": None}
    hs = torch.tensor([float(r["horizon"]) for r in rows])
    ys = torch.tensor([r["median_s"] for r in rows])
    slope = float(((hs - hs.mean()) * (ys - ys.mean())).sum() / (hs - hs.mean()).square().sum().clamp_min(1e-12))
    intercept = float(ys.mean() - slope * hs.mean())
    residual = ((ys - (intercept + slope * hs)).abs() / ys).max()
    return {
        "slope_s_per_step": slope,
        "intercept_s": intercept,
        "max_relative_residual": float(residual),
    }


def search_is_sync_free(planner: CEMPlanner, current, goal, state: torch.Tensor) -> bool | None:
    """On CUDA: run one CEM search with host synchronisations turned into errors (None on other devices)."""
    wm = planner.world_model
    if wm.device.type != "cuda":
        return None
    rep, goal_rep = wm.encode(current), wm.encode_goal(goal)
    gen = torch.Generator(device=wm.device)
    gen.manual_seed(0)
    state = state.to(wm.device)[None]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        planner.search(rep, state, goal_rep, gen)
        return True
    except RuntimeError as exc:
        print(f"plan_bench: host sync inside the CEM search: {exc}", file=sys.stderr)
        return False
    finally:
        torch.cuda.set_sync_debug_mode(0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _ratio(a: float | None, b: float) -> float | None:
    return a / b if a is not None else None


def gpu_memory(device: torch.device) -> dict[str, int | None]:
    """Peak allocated and reserved bytes on a CUDA device since the last reset (None elsewhere)."""
    if device.type != "cuda":
        return {"gpu_peak_bytes": None, "gpu_reserved_peak_bytes": None}
    return {
        "gpu_peak_bytes": torch.cuda.max_memory_allocated(device),
        "gpu_reserved_peak_bytes": torch.cuda.max_memory_reserved(device),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    wm, source = build_world_model(args)
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
    if wm.device.type == "cuda":
        torch.cuda.synchronize(wm.device)
        torch.cuda.reset_peak_memory_stats(wm.device)
    wm.profile = True
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    peak_dtype = torch.bfloat16 if wm.precision == "bf16" else torch.float32
    peak_runs: list[tuple[dict[str, float], float]] = []  # per repeat: a shared CPU's speed drifts between repeats
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
    peaks = {name: statistics.median(p[name] for p, _ in peak_runs) for name in peak_runs[0][0]}
    peak = statistics.median(max(p.values()) for p, _ in peak_runs)
    shape_peak = statistics.median(s for _, s in peak_runs)

    def med(mode: str, key: str) -> float | None:
        return statistics.median(run[key] for run in runs[mode]) if mode in runs else None

    median_s, unc_s, ref_s = med("cached", "total"), med("uncached", "total"), med("reference", "total")
    gpu = gpu_memory(wm.device)  # before the horizon sweep: the peak of the timed plans
    enc_s, pred_s, search_s = med("cached", "encoder"), med("cached", "predictor"), med("cached", "search")
    flops = search_flops(wm.predictor, planners["cached"].config)
    outside = statistics.median(1 - run["predictor"] / run["search"] for run in runs["cached"])
    return {
        "median_s": median_s,
        "uncached_median_s": unc_s,
        "cache_speedup": unc_s / median_s,
        "search_cache_speedup": med("uncached", "search") / search_s,
        "reference_path_median_s": ref_s,
        "speedup_over_reference_path": ref_s / median_s if ref_s else None,
        "native_kernel_speedup": _ratio(med("cached_without_native", "total"), median_s),
        **gpu,
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
        "horizon_scaling": horizon_scaling(wm, search, args, current, goal, state) if args.max_horizon else None,
        "repeats": args.repeats,
        "device": str(wm.device),
        "precision": wm.precision,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
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
