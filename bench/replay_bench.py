"""Replay speed (grid steps per second) of `vjepa2-replay` with the tiny random V-JEPA 2-AC model on CPU.

Writes a generated 256x256 trajectory bag, then times rollouts only and rollouts + CEM planning.
Usage: python bench/replay_bench.py [--steps 24] [--horizon 3] [--samples 25] [--iterations 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from vjepa2_core.hub import make_random_checkpoint
from vjepa2_ros.bags.replay import run_replay
from vjepa2_ros.bags.replay_config import load_config
from vjepa2_ros.bags.synthetic import synthetic_trajectory
from vjepa2_ros.bags.writer import write_trajectory_bag


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--horizon", type=int, default=3)
    p.add_argument("--samples", type=int, default=25)
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for the tiny model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="vit_ac_tiny")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="replay_bench_") as tmp:
        tmp = Path(tmp)
        frames, states, actions = synthetic_trajectory(args.steps, seed=0, size=256)
        bag = write_trajectory_bag(tmp / "bag", frames, states, actions=actions, image_format="jpeg")
        ckpt = make_random_checkpoint(tmp / "model.pt", args.model)
        cem = {"horizon": 2, "samples": args.samples, "topk": min(10, args.samples), "iterations": args.iterations}
        results = {}
        for name, plan in (("rollout_only", False), ("rollout_and_plan", True)):
            cfg = load_config(
                None, horizon=args.horizon, plan=plan, **{"model.checkpoint": str(ckpt), "model.device": args.device}
            )
            cfg.cem = type(cfg.cem)(**cem)
            start = time.perf_counter()
            summary = run_replay(bag, cfg, out=None, progress=False)
            total = time.perf_counter() - start
            results[name] = {
                "steps": summary["steps_evaluated"],
                "steps_per_s": round(summary["steps_per_s"], 2),
                "replay_s": round(summary["wall_time_s"], 3),
                "total_s_with_loading": round(total, 3),
            }
            print(
                f"{name:18s} {summary['steps_per_s']:7.2f} steps/s  ({summary['steps_evaluated']} steps, "
                f"{summary['wall_time_s']:.2f} s replay, {total:.2f} s incl. bag + model loading)"
            )
        meta = {
            "model": args.model,
            "horizon": args.horizon,
            "cem": cem,
            "threads": args.threads,
            "device": args.device,
        }
        print(json.dumps({"replay_bench": results, **meta}))


if __name__ == "__main__":
    main()
