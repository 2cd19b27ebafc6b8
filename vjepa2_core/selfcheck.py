"""`vjepa2-selfcheck`: end-to-end smoke test of the planning stack, offline and in well under a minute on a CPU.

Writes a random-weight tiny AC checkpoint with the hub, loads it back, encodes two generated images (a block that
moves), runs one CEM plan and checks the invariants a robot relies on (cached rollout == full recomputation, every
action within bounds, finite energies). Prints the plan, its energy and the timings; exit status 0 when all hold.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from vjepa2_core.planning.cem import CEMConfig, CEMPlanner
from vjepa2_core.planning.world_model import WorldModel


def scene(block_xy: tuple[int, int], size: int = 96) -> np.ndarray:
    """A generated RGB frame: shaded table, a red block with its top-left corner at `block_xy`."""
    ys, xs = np.mgrid[0:size, 0:size]
    img = np.stack([60 + xs * 0.8, 90 + ys * 0.6, np.full_like(xs, 140.0)], axis=-1)
    x, y = block_xy
    img[y : y + size // 6, x : x + size // 6] = (220, 30, 30)
    return img.clip(0, 255).astype(np.uint8)


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(max(1, min(args.threads, torch.get_num_threads())))
    t0 = time.perf_counter()
    if args.checkpoint:
        wm = WorldModel.from_checkpoint(args.checkpoint, device=args.device)
    else:
        wm = WorldModel.random(args.model, seed=args.seed, device=args.device)
    load_s = time.perf_counter() - t0
    current, goal = scene((20, 40)), scene((50, 30))
    state = torch.tensor([0.45, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0])
    cfg = CEMConfig(horizon=args.horizon, samples=args.samples, topk=args.topk, iterations=args.iterations)
    planner = CEMPlanner(wm, cfg)
    result = planner.plan_images(current, state, goal, seed=args.seed)

    checks = {}
    rep, goal_rep = wm.encode(current), wm.encode_goal(goal)
    probe = torch.randn(4, cfg.horizon, 7, generator=torch.Generator().manual_seed(0)) * cfg.maxnorm
    cached, _ = wm.rollout(rep, state, probe.to(wm.device), cached=True)
    full, _ = wm.rollout(rep, state, probe.to(wm.device), cached=False)
    checks["cached_matches_full_rollout"] = bool(torch.allclose(cached, full, atol=1e-4, rtol=1e-4))
    a = result.actions
    checks["actions_within_bounds"] = bool(
        a[:, :3].abs().max() <= cfg.maxnorm + 1e-6 and a[:, 6].abs().max() <= cfg.gripper_max + 1e-6
    )
    checks["energies_finite"] = bool(np.isfinite([result.energy, *result.energy_history]).all())
    checks["goal_encoded_once"] = wm.encode_goal(goal) is goal_rep
    return {
        "model": args.checkpoint or f"{args.model} (random weights)",
        "device": str(wm.device),
        "crop_size": wm.crop_size,
        "load_s": load_s,
        "plan": result.to_dict(),
        "checks": checks,
        "ok": all(checks.values()),
        "total_s": time.perf_counter() - t0,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vjepa2-selfcheck", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vit_ac_tiny", help="registry architecture for the random weights")
    p.add_argument("--checkpoint", default=None, help="use this checkpoint instead of random weights")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--horizon", type=int, default=2)
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--topk", type=int, default=10)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run(args)
    except Exception as exc:  # a self-check reports any failure as a readable line and a non-zero exit
        print(f"vjepa2-selfcheck: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        plan = report["plan"]
        print(f"vjepa2-selfcheck: {report['model']} on {report['device']} (crop {report['crop_size']})")
        print("plan (dx dy dz droll dpitch dyaw dgripper):")
        for row in plan["actions"]:
            print("  " + " ".join(f"{v:+.4f}" for v in row))
        hist = " ".join(f"{e:.5f}" for e in plan["energy_history"])
        print(f"energy {plan['energy']:.5f}  per iteration: {hist}")
        timings = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in plan["timings"].items())
        print(f"timings: load {report['load_s']:.2f} s, {timings}, total {report['total_s']:.2f} s")
        for name, ok in report["checks"].items():
            print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    print("vjepa2-selfcheck: OK" if report["ok"] else "vjepa2-selfcheck: FAILED", file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
