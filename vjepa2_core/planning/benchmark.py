"""Measurements of the planning benches: the bench world model, FLOP counts, matmul peaks and the horizon sweep.

`bench/plan_bench.py` times a planning call with these; `bench/gpu_check.py` (FLOP counts, matmul peaks) and
`bench/planner_quality.py` (the bench world model of the issue's size) reuse them. They live here, not in a script,
so that every user imports a module instead of loading a script by its path.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import torch

from vjepa2_core.devices import synchronize
from vjepa2_core.models.cpu_kernels import PackedLinear, onednn_linear_available
from vjepa2_core.planning.cem import CEMConfig, CEMPlanner
from vjepa2_core.planning.world_model import DEFAULT_PRECISION, WorldModel

# -- default predictor/encoder config (a scaled-down V-JEPA 2-AC that keeps the predictor matmul-bound on a CPU)
# (width 512 / head dim 64 like the released predictor's heads, 8x8 patches per frame, 2 blocks: ~80 GFLOP per call)
DEFAULT_MODEL = dict(img_size=128, embed_dim=384, enc_depth=2, enc_heads=6, pred_dim=512, pred_depth=2, pred_heads=8)


def build_world_model(
    ac_checkpoint: str | None = None,
    model: str | None = None,
    device: str = "cpu",
    precision: str = DEFAULT_PRECISION,
    seed: int = 0,
    **sizes: int,
) -> tuple[WorldModel, str]:
    """The bench's world model and where it came from: registry `model` with random weights, `ac_checkpoint`
    (fixture `{config, state_dict}` or a project checkpoint), or random weights of `DEFAULT_MODEL` updated by
    `sizes` (its keys: img_size, embed_dim, enc_depth, enc_heads, pred_dim, pred_depth, pred_heads)."""
    from vjepa2_core.hub import load_checkpoint, load_fixture_model
    from vjepa2_core.models import build_reference_model

    if unknown := sorted(set(sizes) - set(DEFAULT_MODEL)):
        raise TypeError(f"unknown model sizes {unknown}; known: {sorted(DEFAULT_MODEL)}")
    size = {**DEFAULT_MODEL, **sizes}
    if model:
        return registry_world_model(model, device, precision, seed), f"{model} (random weights)"
    if ac_checkpoint:
        data = load_checkpoint(ac_checkpoint)
        if "config" not in data or "state_dict" not in data:
            return WorldModel.from_checkpoint(ac_checkpoint, device=device, precision=precision), ac_checkpoint
        predictor = load_fixture_model(ac_checkpoint, "ac_predictor")
        cfg = data["config"]
        img = cfg["img_size"][0] if isinstance(cfg["img_size"], (tuple, list)) else cfg["img_size"]
        # fixtures hold only the predictor: pair it with a random encoder of the matching width and patch size
        enc_kwargs = dict(
            embed_dim=cfg["embed_dim"], num_heads=max(1, cfg["embed_dim"] // 64), depth=size["enc_depth"]
        )
        source = f"{ac_checkpoint} (+ random {size['enc_depth']}-block encoder)"
    else:
        img, cfg = size["img_size"], dict(patch_size=16)
        predictor = build_reference_model(
            "ac_predictor",
            img_size=img,
            patch_size=16,
            num_frames=64,
            tubelet_size=2,
            embed_dim=size["embed_dim"],
            predictor_embed_dim=size["pred_dim"],
            depth=size["pred_depth"],
            num_heads=size["pred_heads"],
        )
        enc_kwargs = dict(embed_dim=size["embed_dim"], num_heads=size["enc_heads"], depth=size["enc_depth"])
        source = "random weights"
    encoder = build_reference_model(
        "encoder", img_size=img, patch_size=cfg.get("patch_size", 16), num_frames=64, tubelet_size=2, **enc_kwargs
    )
    return WorldModel(encoder, predictor, crop_size=img, device=device, precision=precision), source


def registry_world_model(model: str, device: str, precision: str, seed: int) -> WorldModel:
    """Registry model `model` with random weights, initialised on the device itself (a 1B-parameter encoder is not
    built on the host first)."""
    from vjepa2_core.hub import get_spec
    from vjepa2_core.hub.loading import build_encoder_and_predictor

    with torch.device(device):
        encoder, predictor = build_encoder_and_predictor(model, seed=seed)
    crop = get_spec(model).img_size
    return WorldModel(encoder, predictor, crop_size=crop, device=device, precision=precision)


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
            synchronize(device)
            start = time.perf_counter()
            kernel()
            synchronize(device)
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
                synchronize(device)
                start = time.perf_counter()
                for lin, i in zip(layers, inputs):
                    kernel(lin, i)
                synchronize(device)
                best = min(best, time.perf_counter() - start)
    return flops / best


def horizon_scaling(
    wm: WorldModel, search: dict, current, goal, state, max_horizon: int, repeats: int, seed: int = 0
) -> dict[str, Any]:
    """Median cached search time per horizon 1..max_horizon (`repeats` timed plans each, seeds `seed + 1..`), with a
    least-squares line through the medians; a horizon that runs out of GPU memory is reported, the others still are."""
    rows = []
    planners = {h: CEMPlanner(wm, CEMConfig(**{**search, "horizon": h})) for h in range(1, max_horizon + 1)}
    times: dict[int, list[float]] = {h: [] for h in planners}
    failed: dict[int, str] = {}
    for r in range(repeats + 1):  # the first round warms up every horizon
        for h, planner in planners.items():  # interleaved: contention hits every horizon alike
            if h in failed:
                continue
            try:
                result = planner.plan_images(current, state, goal, seed=seed + r)
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
    return {"rows": rows, **line_fit([r for r in rows if "median_s" in r])}


def line_fit(rows: list[dict[str, Any]]) -> dict[str, float | None]:
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


def gpu_memory(device: torch.device) -> dict[str, int | None]:
    """Peak allocated and reserved bytes on a CUDA device since the last reset (None elsewhere)."""
    if device.type != "cuda":
        return {"gpu_peak_bytes": None, "gpu_reserved_peak_bytes": None}
    return {
        "gpu_peak_bytes": torch.cuda.max_memory_allocated(device),
        "gpu_reserved_peak_bytes": torch.cuda.max_memory_reserved(device),
    }
