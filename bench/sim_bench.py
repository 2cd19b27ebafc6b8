"""Simulator speed: step, render, goal image and state restore, and the data-collection rate.

    .venv/bin/python bench/sim_bench.py --json

Numbers on a shared CPU are noisy; MuJoCo renders with Mesa's software OpenGL (EGL) here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np

from vjepa2_ros.sim.collect import collect
from vjepa2_ros.sim.env import FetchSim, SimConfig


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def bench_size(size: int, repeats: int) -> dict:
    sim = FetchSim(SimConfig(image_size=size), seed=0)
    try:
        sim.reset(seed=1)
        rng = np.random.default_rng(0)
        snap = sim.get_snapshot()
        row = {
            "image_size": size,
            "step_ms": median_ms(lambda: sim.step(np.r_[rng.uniform(-0.02, 0.02, 3), 0, 0, 0, 0]), repeats),
            "render_ms": median_ms(sim.render, repeats),
            "goal_image_ms": median_ms(sim.goal_image, max(3, repeats // 5)),
            "restore_ms": median_ms(lambda: sim.set_snapshot(snap), repeats),
        }
    finally:
        sim.close()
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--collect-episodes", type=int, default=4)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows = [bench_size(s, args.repeats) for s in args.sizes]
    with tempfile.TemporaryDirectory() as tmp:
        summary = collect(tmp, args.collect_episodes, steps=40, seed=0, log=lambda _: None)
    steps = args.collect_episodes * 40
    result = {"sim": rows, "collect_64px": {"steps": steps, "steps_per_s": steps / summary["seconds"]}}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for r in rows:
        print("  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()))
    print(f"collect (64 px, step + render + lossless write): {result['collect_64px']['steps_per_s']:.0f} steps/s")


if __name__ == "__main__":
    main()
