"""Forward throughput of the encoder and AC predictor, and the gain of the cached (incremental) AC rollout.

    .venv/bin/python bench/models_bench.py --json            # small sizes, CPU fp32
    .venv/bin/python bench/models_bench.py --device cuda --dtype bfloat16 --ac-sizes vit_ac_giant --batch 16

Weights are random (throughput does not depend on them). Numbers on a shared CPU are noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from vjepa2_core.devices import synchronize
from vjepa2_core.hub import MODELS
from vjepa2_core.models import ENCODER_SIZES, ACPredictor, VisionTransformer

AC_SIZES = {
    **{name: spec.predictor for name, spec in MODELS.items() if spec.predictor_kind == "ac_predictor"},
    # a mid-size test predictor (not a release): ViT-S width, 12 blocks
    "vit_ac_small": {
        **MODELS["vit_ac_giant"].predictor,
        "embed_dim": 384,
        "predictor_embed_dim": 384,
        "depth": 12,
        "num_heads": 6,
    },
}


def timed(fn: Callable[..., object], *fn_args, device: torch.device, repeats: int) -> float:
    """Median wall time of ``fn(*fn_args)`` over ``repeats`` runs after one warm-up."""
    times = []
    for i in range(repeats + 1):
        synchronize(device)
        start = time.perf_counter()
        fn(*fn_args)
        synchronize(device)
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_encoders(args, device, autocast) -> list[dict]:
    rows = []
    for size in args.encoder_sizes:
        model = (
            VisionTransformer(**ENCODER_SIZES[size], img_size=args.img, num_frames=max(args.frames, 2), use_rope=True)
            .to(device)
            .eval()
        )
        x = torch.randn(args.batch, 3, args.frames, args.img, args.img, device=device)
        with torch.no_grad(), autocast():
            seconds = timed(model, x, device=device, repeats=args.repeats)
        tokens = args.batch * (args.frames // 2) * (args.img // 16) ** 2
        rows.append(dict(size=size, batch=args.batch, tokens=tokens, seconds=seconds, tokens_per_s=tokens / seconds))
    return rows


def rollout_full(model: ACPredictor, z0, actions, states):
    """Planner without a cache: every step re-runs the predictor on the whole sequence so far."""
    frames, tokens = [z0], z0.shape[1]
    for h in range(actions.shape[1]):
        out = model(torch.cat(frames, dim=1), actions[:, : h + 1], states[:, : h + 1])
        frames.append(out[:, -tokens:])
    return torch.stack(frames[1:], dim=1)


def rollout_cached(model: ACPredictor, z0, actions, states):
    """Planner with the K/V cache: one new frame per step."""
    cache, z, outs = model.new_cache(max_frames=actions.shape[1]), z0, []
    for h in range(actions.shape[1]):
        z = model.forward_frame(z, actions[:, h], states[:, h], cache)
        outs.append(z)
    return torch.stack(outs, dim=1)


def bench_ac(args, device, autocast) -> tuple[list[dict], list[dict]]:
    forward_rows, rollout_rows = [], []
    for size in args.ac_sizes:
        model = ACPredictor(**AC_SIZES[size]).to(device).eval()
        g2 = model.tokens_per_frame
        T = args.ac_frames
        x = torch.randn(args.batch, T * g2, model.embed_dim, device=device)
        a = torch.randn(args.batch, T, 7, device=device)
        s = torch.randn(args.batch, T, 7, device=device)
        with torch.no_grad(), autocast():
            seconds = timed(model, x, a, s, device=device, repeats=args.repeats)
        tokens = args.batch * T * (g2 + model.cond_tokens)
        forward_rows.append(
            dict(size=size, batch=args.batch, frames=T, tokens=tokens, seconds=seconds, tokens_per_s=tokens / seconds)
        )
        z0 = x[:, :g2]
        for horizon in args.horizons:
            ah, sh = torch.randn(args.batch, horizon, 7, device=device), torch.randn(
                args.batch, horizon, 7, device=device
            )
            with torch.no_grad(), autocast():
                full_s = timed(rollout_full, model, z0, ah, sh, device=device, repeats=args.repeats)
                cached_s = timed(rollout_cached, model, z0, ah, sh, device=device, repeats=args.repeats)
                diff = (
                    (rollout_full(model, z0, ah, sh).float() - rollout_cached(model, z0, ah, sh).float()).abs().max()
                )
            rollout_rows.append(
                dict(
                    size=size,
                    batch=args.batch,
                    horizon=horizon,
                    full_s=full_s,
                    cached_s=cached_s,
                    speedup=full_s / cached_s,
                    max_abs_diff=float(diff),
                )
            )
    return forward_rows, rollout_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder-sizes", nargs="+", default=["vit_tiny", "vit_small"], choices=sorted(ENCODER_SIZES))
    parser.add_argument("--ac-sizes", nargs="+", default=["vit_ac_tiny", "vit_ac_small"], choices=sorted(AC_SIZES))
    parser.add_argument("--img", type=int, default=256)
    parser.add_argument("--frames", type=int, default=2, help="encoder input frames (2 = one tubelet)")
    parser.add_argument("--ac-frames", type=int, default=4, help="frames per AC forward")
    parser.add_argument("--horizons", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="2+ threads suffer badly on an oversubscribed CPU")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    encoder_rows = bench_encoders(args, device, autocast)
    ac_rows, rollout_rows = bench_ac(args, device, autocast)
    result = dict(
        device=str(device),
        dtype=args.dtype,
        threads=args.threads,
        torch=torch.__version__,
        encoder=encoder_rows,
        ac_predictor=ac_rows,
        rollout=rollout_rows,
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"device={device} dtype={args.dtype} threads={args.threads}")
    for r in encoder_rows:
        print(f"encoder {r['size']:<12} batch {r['batch']}: {r['tokens_per_s']:10.0f} tokens/s ({r['seconds']:.3f} s)")
    for r in ac_rows:
        print(f"ac      {r['size']:<12} batch {r['batch']} T={r['frames']}: {r['tokens_per_s']:10.0f} tokens/s")
    for r in rollout_rows:
        print(
            f"rollout {r['size']:<12} H={r['horizon']}: full {r['full_s']:.3f} s, cached {r['cached_s']:.3f} s, "
            f"speed-up x{r['speedup']:.2f} (max diff {r['max_abs_diff']:.1e})"
        )


if __name__ == "__main__":
    main()
