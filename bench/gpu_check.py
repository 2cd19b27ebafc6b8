"""GPU check of the released ViT-g world model: one command on a lent GPU writes one JSON and prints a table.

    PYTHONPATH=. python3 bench/gpu_check.py --out gpu_check.json          # on the GPU machine, under 8 minutes
    PYTHONPATH=. python3 bench/gpu_check.py --tiny --out gpu_check_tiny.json   # the same checks, CPU, tiny models

It needs torch, numpy and opencv only (no make, no network, no tensordict/rosbags). Top-level keys:
- correctness: the device's encoder, predictor and cached rollout against the CPU's on the same weights (released
  widths, 4 blocks; fp32 with TF32 off must be close, TF32's difference is reported), cached rollout against
  uncached on the device, and bf16's ranking of one CEM population against fp32's (on the trained sim model
  shipped in vjepa2_ros/models: random weights barely react to actions, so their ranking would be noise).
- plan_paper_budget (CEM 800 x 10, horizon 1, top 10) and plan_wrapper_budget (400 x 10, horizon 2): ViT-g AC
  with the released shapes and random weights, bf16 and fp32+TF32: seconds per plan, GPU peak memory against the
  budget's estimate, the rollout chunk, and the predictor's FLOP rate as a fraction of a measured bf16 matmul peak.
- budget_check: the planner node's own check (`budget.plan_budget_refusal`) on both budgets and precisions.
- sync_free: one search under `torch.cuda.set_sync_debug_mode("error")`.
- train_step: `vjepa2_core.training.gpu_steps.train_step_report` (one AC training step of the ViT-g-sized
  predictor and one encoder fine-tuning step: time and peak memory).
With --tiny the CPU stands in for the device and the tiny registry models for ViT-g (fields that only a GPU has are
null with a `not_applicable` reason; the budgets run 2 iterations instead of 10). Each section is recorded on its
own: an error in one is written into it and the others still run; the JSON is rewritten after every section, so a
run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vjepa2_core.hub import get_spec
from vjepa2_core.hub.loading import build_encoder_and_predictor
from vjepa2_core.planning.base import white_noise
from vjepa2_core.planning.benchmark import matmul_rate, search_flops
from vjepa2_core.planning.budget import available_bytes, plan_budget_refusal, plan_cost
from vjepa2_core.planning.cem import CEMConfig, CEMPlanner
from vjepa2_core.planning.world_model import WorldModel
from vjepa2_core.selfcheck import scene

BUDGETS = {  # (horizon, samples, iterations, topk)
    "paper": dict(horizon=1, samples=800, iterations=10, topk=10),
    "wrapper": dict(horizon=2, samples=400, iterations=10, topk=10),
}
FP32_TOLERANCE = 2e-3  # max |difference| of layer-normed outputs, fp32 (TF32 off) device vs CPU, and cached/uncached
TF32_TOLERANCE = 5e-2
RANK_AGREEMENT = 0.9  # Spearman correlation of bf16's and fp32's energies over one CEM population
TRAINED_MODEL = Path(__file__).resolve().parents[1] / "vjepa2_ros" / "models" / "sim_reach.safetensors"
SECTION_BUDGET_S = 60.0  # timed plans of one budget and precision stop repeating after this (one always runs)
TINY_ITERATIONS = 2
NOT_ON_CPU = "not applicable: the CPU stands in for the device (--tiny)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--tiny", action="store_true", help="tiny models on the CPU (or --device): the same checks")
    p.add_argument("--device", help="device to check (default: cuda; with --tiny: cpu)")
    p.add_argument("--repeats", type=int, default=2, help="timed plans per budget and precision (after a warm-up)")
    p.add_argument("--seed", type=int, default=0)
    return p


# -- models


def model_names(tiny: bool) -> tuple[str, dict[str, Any] | None]:
    """(registry model, constructor overrides) of the correctness model: the released widths with 4 blocks."""
    return ("vit_ac_tiny", None) if tiny else ("vit_ac_giant", {"depth": 4})


def build_modules(name: str, overrides: dict | None, seed: int, device: torch.device):
    """Random (encoder, predictor) of registry model `name`, initialised on `device`."""
    with torch.device(device):
        return build_encoder_and_predictor(name, overrides=overrides, seed=seed)


def world_model(modules, name: str, device: torch.device, precision: str, tf32: bool = True) -> WorldModel:
    encoder, predictor = modules
    crop = get_spec(name).img_size
    return WorldModel(encoder, predictor, crop_size=crop, device=device, precision=precision, tf32=tf32)


def images(size: int) -> tuple[np.ndarray, np.ndarray]:
    return scene((size // 5, size // 3), size), scene((size // 2, size // 4), size)


# -- (a) correctness


def _diff(a: torch.Tensor, b: torch.Tensor, tolerance: float) -> dict[str, Any]:
    d = (a.float().cpu() - b.float().cpu()).abs()
    return {"max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()), "tolerance": tolerance}


def _rollout_pair(wm_a: WorldModel, wm_b: WorldModel, image: np.ndarray, actions: torch.Tensor):
    """Encoder outputs and cached rollouts of two world models on the same image and actions."""
    state = torch.tensor([0.45, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0])
    out = []
    for wm in (wm_a, wm_b):
        rep = wm.encode(image)
        pred, _ = wm.rollout(rep, state.to(wm.device), actions.to(wm.device), cached=True)
        out.append((rep, pred))
    return out


def correctness(device: torch.device, tiny: bool, seed: int) -> dict[str, Any]:
    name, overrides = model_names(tiny)
    cpu_modules = build_modules(name, overrides, seed, torch.device("cpu"))
    image, goal = images(get_spec(name).img_size)
    actions = (torch.rand(8, 2, 7, generator=torch.Generator().manual_seed(seed)) - 0.5) * 0.1
    cpu = world_model(copy.deepcopy(cpu_modules), name, torch.device("cpu"), "fp32")
    strict = world_model(copy.deepcopy(cpu_modules), name, device, "fp32", tf32=False)
    (rep_c, pred_c), (rep_d, pred_d) = _rollout_pair(cpu, strict, image, actions)
    report: dict[str, Any] = {"model": f"{name} {overrides or ''}".strip(), "device": str(device)}
    report["encoder"] = _diff(rep_c, rep_d, FP32_TOLERANCE)
    report["predictor"] = _diff(pred_c, pred_d, FP32_TOLERANCE)
    state = torch.tensor([0.45, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0], device=device)
    uncached, _ = strict.rollout(rep_d, state, actions.to(device), cached=False)
    report["cached_vs_uncached"] = _diff(pred_d, uncached, FP32_TOLERANCE)
    if device.type == "cuda":
        tf32 = world_model(copy.deepcopy(cpu_modules), name, device, "fp32")
        (_, _), (rep_t, pred_t) = _rollout_pair(cpu, tf32, image, actions)
        report["tf32_encoder"] = _diff(rep_c, rep_t, TF32_TOLERANCE)
        report["tf32_predictor"] = _diff(pred_c, pred_t, TF32_TOLERANCE)
        del tf32
    report["bf16_ranking"] = bf16_ranking(device, seed)
    checks = [v["max_abs_diff"] <= v["tolerance"] for v in report.values() if isinstance(v, dict) and "tolerance" in v]
    report["ok"] = all(checks) and report["bf16_ranking"]["ok"]
    return report


def bf16_ranking(device: torch.device, seed: int) -> dict:
    """Energies of one CEM population (the reference's first iteration) under fp32 and bf16 on the trained sim
    model: how well bf16 ranks the samples as fp32 does (the CEM keeps the top k)."""
    config = CEMConfig(horizon=2, samples=64, topk=10, iterations=1)
    fp32, bf16 = (WorldModel.from_checkpoint(str(TRAINED_MODEL), device=device, precision=p) for p in ("fp32", "bf16"))
    fp32.tf32 = False
    image, goal = images(fp32.crop_size)
    planners = [CEMPlanner(wm, config) for wm in (fp32, bf16)]
    state = fp32.conditioning.state_mean.float()[None].to(device)  # a state the model was trained around
    space = planners[0].space
    mean, std = space.initial_distribution(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    noise = white_noise(config.samples, config.horizon, gen, device)
    cand = space.constrain(mean + std * noise, state, space.bounds(device))
    energies = []
    for planner in planners:
        wm = planner.world_model
        planner.chunk = planner.rollout_chunk(config.samples)
        energies.append(planner._energy(wm.encode(image), state, wm.encode_goal(goal), cand).float().cpu())
    ranks = [e.argsort().argsort().double() for e in energies]
    spearman = float(torch.corrcoef(torch.stack(ranks))[0, 1])
    top = [set(e.topk(config.topk, largest=False).indices.tolist()) for e in energies]
    best_in_top = int(energies[0].argmin()) in top[1]
    return {
        "spearman": spearman,
        "topk_overlap": len(top[0] & top[1]) / config.topk,
        "fp32_best_in_bf16_topk": best_in_top,
        "energy_spread": float(energies[0].std()),
        "model": TRAINED_MODEL.name,
        "ok": spearman >= RANK_AGREEMENT and best_in_top,
    }


# -- (b) plans at the reference budgets, (c) the node's budget check, (d) sync-free search


def gpu_peak(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def time_plans(wm: WorldModel, budget: dict, repeats: int, seed: int, bf16_peak: float | None) -> dict[str, Any]:
    """A warm-up plan, then `repeats` timed plans from images: seconds, peak memory, chunk and FLOP fraction."""
    device = wm.device
    image, goal = images(wm.crop_size)
    state = torch.tensor([0.45, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0])
    planner = CEMPlanner(wm, CEMConfig(**budget))
    limit = available_bytes(device)
    planner.plan_images(image, state, goal, seed=seed)  # warm-up: RoPE tables, allocator pools, goal encoding
    base = 0
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)  # weights and the goal cache: what the plan does not add
    runs, start = [], time.perf_counter()
    for r in range(repeats):
        if r and time.perf_counter() - start > SECTION_BUDGET_S:
            break  # time-boxed: the whole check must end within minutes
        result = planner.plan_images(image, state, goal, seed=seed + 1 + r)
        runs.append(result.timings)
    plan_s = statistics.median(t["optimize_s"] + t["final_eval_s"] for t in runs)
    flops = search_flops(wm.predictor, planner.config)
    estimate = plan_cost(wm, budget["horizon"], budget["samples"], budget["iterations"], limit)
    peak = gpu_peak(device)
    return {
        "seconds_per_plan": plan_s,
        "encode_s": statistics.median(t["encode_s"] for t in runs),
        "all_plan_s": [t["optimize_s"] + t["final_eval_s"] for t in runs],
        "rollout_chunk": planner.chunk,
        "memory_limit_bytes": limit,
        "estimate_bytes": estimate.peak_bytes,
        "gpu_peak_bytes": peak,
        "plan_peak_bytes": None if peak is None else peak - base,  # what the plans added to the weights
        "plan_peak_within_estimate": None if peak is None else peak - base <= estimate.peak_bytes,
        "plan_peak_within_limit": None if peak is None else peak - base <= limit,
        "timed_plans": len(runs),
        "predictor_tflop_per_plan": flops / 1e12,
        "tflop_per_s": flops / plan_s / 1e12,
        "fraction_of_bf16_matmul_peak": flops / plan_s / bf16_peak if bf16_peak else None,
        "samples_evaluated": result.samples_evaluated,
    }


def sync_free(wm: WorldModel, seed: int) -> dict[str, Any]:
    """One short search (paper budget, 2 iterations) with host synchronisations turned into errors."""
    if wm.device.type != "cuda":
        return {"ok": None, "not_applicable": NOT_ON_CPU + " (no host-device synchronisation to detect)"}
    image, goal = images(wm.crop_size)
    rep, goal_rep = wm.encode(image), wm.encode_goal(goal)
    planner = CEMPlanner(wm, CEMConfig(**{**BUDGETS["paper"], "iterations": 2}))
    state = torch.tensor([[0.45, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0]], device=wm.device)
    gen = torch.Generator(device=wm.device).manual_seed(seed)
    planner.search(rep, state, goal_rep, gen)  # warm-up outside the check (tables, pools)
    torch.cuda.synchronize(wm.device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        planner.search(rep, state, goal_rep, gen)
        return {"ok": True, "precision": wm.precision, "search": "paper budget, 2 iterations"}
    except RuntimeError as exc:
        return {"ok": False, "precision": wm.precision, "error": str(exc).splitlines()[0]}
    finally:
        torch.cuda.set_sync_debug_mode(0)


def budget_check(wm: WorldModel) -> dict[str, Any]:
    """The planner node's check of both reference budgets on this world model, here and now."""
    out = {}
    for name, b in BUDGETS.items():
        refusal = plan_budget_refusal(wm, b["horizon"], b["samples"], b["iterations"])
        out[name] = {"accepted": refusal is None, "refusal": refusal}
    return out


def matmul_peaks(device: torch.device, tiny: bool) -> dict[str, float]:
    """Measured dense matmul rates (TFLOP/s): bf16, and fp32 with TF32 (CUDA) or plain fp32 (CPU)."""
    n = 512 if tiny else None
    bf16 = max(matmul_rate(device, n=n, repeats=5, dtype=torch.bfloat16).values())
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        fp32 = max(matmul_rate(device, n=n, repeats=5).values())
    finally:
        torch.set_float32_matmul_precision(before)
    return {"bf16_tflop_per_s": bf16 / 1e12, "fp32_tf32_tflop_per_s": fp32 / 1e12}


def plans_and_budgets(device: torch.device, tiny: bool, repeats: int, seed: int, report: dict, save) -> None:
    """Sections plan_paper_budget, plan_wrapper_budget, budget_check and sync_free on the (random) ViT-g AC."""
    name = "vit_ac_tiny" if tiny else "vit_ac_giant"
    peaks = run_section(report, "matmul_peak", lambda: matmul_peaks(device, tiny), save)
    bf16_peak = peaks.get("bf16_tflop_per_s", 0) * 1e12 or None
    modules = build_modules(name, None, seed, device)
    budgets = {k: {**b, "iterations": TINY_ITERATIONS} if tiny else b for k, b in BUDGETS.items()}
    for key in ("plan_paper_budget", "plan_wrapper_budget"):
        report[key] = {"model": f"{name} (random weights)", "budget": budgets[key.split("_")[1]]}
    report["budget_check"] = {}
    for precision in ("fp32", "bf16"):  # fp32 first: bf16 converts the weights in place
        wm = world_model(modules, name, device, precision)
        label = "fp32_tf32" if precision == "fp32" else precision
        run_section(report["budget_check"], label, partial(budget_check, wm), save)
        for budget, config in budgets.items():
            timed = partial(time_plans, wm, config, repeats, seed, bf16_peak)
            run_section(report[f"plan_{budget}_budget"], label, timed, save)
            _free(device)
        if precision == "bf16":
            run_section(report, "sync_free", partial(sync_free, wm, seed), save)
    del wm
    accepted = [v.get("accepted") for p in report["budget_check"].values() for v in p.values() if isinstance(v, dict)]
    report["budget_check"]["ok"] = bool(accepted) and all(accepted)
    del modules
    _free(device)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# -- (e) training step (vjepa2_core.training.gpu_steps)


def train_step(device: torch.device, tiny: bool) -> dict[str, Any]:
    from vjepa2_core.training.gpu_steps import train_step_report

    return train_step_report(device=device, tiny=tiny)


# -- driver


def run_section(report: dict, key: str, fn: Callable[[], dict], save: Callable[[], None]) -> dict:
    """report[key] = fn(), or the error it raised (the other sections still run); the JSON is saved after it."""
    start = time.perf_counter()
    try:
        out = fn()
    except Exception as exc:  # noqa: BLE001 - a failed section is a result to report, not the end of the check
        out = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc().splitlines()[-6:]}
    if isinstance(out, dict):
        out["section_s"] = time.perf_counter() - start
    report[key] = out
    save()
    return out


def device_info(device: torch.device, tiny: bool) -> dict[str, Any]:
    info = {"device": str(device), "tiny": tiny, "torch": torch.__version__, "python": sys.version.split()[0]}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, capability=list(torch.cuda.get_device_capability(device)))
        info.update(total_memory_bytes=props.total_memory, cuda=torch.version.cuda)
    else:
        info["gpu_fields"] = NOT_ON_CPU
    return info


def run(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    out = Path(args.out)
    report: dict[str, Any] = {"device": device_info(device, args.tiny)}
    start = time.perf_counter()

    def save() -> None:
        report["wall_s"] = time.perf_counter() - start
        out.write_text(json.dumps(report, indent=1, default=str))

    run_section(report, "correctness", lambda: correctness(device, args.tiny, args.seed), save)
    _free(device)
    try:
        plans_and_budgets(device, args.tiny, args.repeats, args.seed, report, save)
    except Exception as exc:  # noqa: BLE001 - e.g. ViT-g does not fit: said in every section it leaves empty
        error = f"{type(exc).__name__}: {exc}"
        for key in ("plan_paper_budget", "plan_wrapper_budget", "budget_check", "sync_free"):
            report.setdefault(key, {}).setdefault("error", error)
        _free(device)
    run_section(report, "train_step", lambda: train_step(device, args.tiny), save)
    save()
    return report


def print_table(report: dict[str, Any]) -> None:
    """One line per measured figure: section, field, value."""
    rows = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k not in ("traceback", "all_plan_s"):
                    walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            rows.append((prefix, shown))

    walk("", report)
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {device}: no CUDA GPU here; use --tiny to run the checks on the CPU")
    if device.type != "cuda" and not args.tiny:
        parser.error("the full check runs ViT-g at the reference budgets: it needs a CUDA device (or --tiny)")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    report = run(args, device)
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
