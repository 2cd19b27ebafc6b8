"""Planner quality: the energy of the plan each planner returns within a wall-time budget, on real image pairs.

Users care about how good a plan is in the time between two camera frames, not how many samples were drawn, so
every planner (`CEMConfig.planner`) runs with `time_budget_s` (anytime: no new iteration once the budget is spent)
and an unbounded iteration count; the score is the energy of the returned plan (the same final evaluation for
every planner) next to its gain over standing still (zero actions), and, where the goal pose is known (the
simulator), how far the planned end pose is from it.

Scenes: the Franka example pair (/work/shared/data/franka_example_traj.npz) with a small random-weight model (the
192-wide predictor of bench/plan_bench.py's issue config), and simulator start/goal pairs (FetchSim reach) with the
shipped sim model and the sim planner's search space. Budgets and planners are interleaved per pair and seed so
that CPU contention hits them alike.

    python bench/planner_quality.py --out runs/planner_quality          # JSON + PNG
    python bench/planner_quality.py --scenes none --closed-loop-episodes 20   # closed-loop sim reach only

`--closed-loop-episodes N` also runs N simulator reach episodes per planner through the node's closed-loop
controller (`vjepa2-sim-eval`'s planner policy, config/sim_planner.yaml) with `--closed-loop-budget` seconds of
search per step (`cem.time_budget_s`), and reports each planner's success rate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vjepa2_core.planning.benchmark import build_world_model
from vjepa2_core.planning.cem import CEMConfig
from vjepa2_core.planning.energies import trajectory_energy
from vjepa2_core.planning.planners import PLANNERS, make_planner
from vjepa2_core.planning.world_model import DEFAULT_PRECISION, PRECISIONS, WorldModel

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VJEPA2_SHARED", REPO.parent / "shared"))
FRANKA_NPZ = SHARED / "data" / "franka_example_traj.npz"
SIM_MODEL = REPO / "vjepa2_ros" / "models" / "sim_reach.safetensors"
BUDGETS = (0.25, 0.5, 1.0, 2.0, 4.0)
# search spaces: the 192-wide search for the Franka pair; the sim planner's (config/sim_planner.yaml)
FRANKA_SEARCH = dict(horizon=3, samples=100, topk=10)
SIM_SEARCH = dict(horizon=1, samples=100, topk=10, momentum_mean=0.25, maxnorm=0.15, axis={"gripper": 0.0})
FRANKA_MODEL = dict(img_size=128, embed_dim=384, enc_depth=2, enc_heads=6, pred_dim=192, pred_depth=4, pred_heads=6)


def franka_scene(seed: int, precision: str = DEFAULT_PRECISION) -> dict[str, Any]:
    """The real two-frame Franka pair and a random-weight world model of the issue's 192-wide size."""
    if not FRANKA_NPZ.exists():
        raise FileNotFoundError(f"{FRANKA_NPZ} not found (set VJEPA2_SHARED)")
    data = np.load(FRANKA_NPZ)
    torch.manual_seed(seed)
    wm, _ = build_world_model(precision=precision, **FRANKA_MODEL)  # plan_bench's model at the size
    obs, states = data["observations"][0], torch.as_tensor(data["states"][0])
    pair = dict(current=obs[0], goal=obs[1], state=states[0], goal_xyz=None, name="franka")
    return dict(name="franka", world_model=wm, search=FRANKA_SEARCH, pairs=[pair])


def sim_scene(count: int, seed: int, precision: str = DEFAULT_PRECISION) -> dict[str, Any]:
    """`count` FetchSim reach start/goal pairs (seeds seed..seed+count-1) and the shipped sim model."""
    from vjepa2_ros.sim.env import FetchSim, SimConfig

    if not SIM_MODEL.exists():
        raise FileNotFoundError(f"{SIM_MODEL} not found")
    wm = WorldModel.from_checkpoint(str(SIM_MODEL), precision=precision)
    sim, pairs = FetchSim(SimConfig(), seed=seed), []
    try:
        for i in range(count):
            state = sim.reset(seed=seed + i)
            pairs.append(
                dict(
                    current=sim.render(),
                    goal=sim.goal_image(),
                    state=torch.as_tensor(state, dtype=torch.float32),
                    goal_xyz=torch.as_tensor(sim.goal_state()[:3], dtype=torch.float32),
                    name=f"sim{seed + i}",
                )
            )
    finally:
        sim.close()
    return dict(name="sim", world_model=wm, search=SIM_SEARCH, pairs=pairs)


def run_scene(scene: dict[str, Any], planners: list[str], budgets: list[float], seeds: int) -> list[dict]:
    """One row per (pair, seed, budget, planner): returned-plan energy, wall time, iterations, distance to goal."""
    wm, rows = scene["world_model"], []
    for pair in scene["pairs"]:
        rep, goal = wm.encode(pair["current"]), wm.encode_goal(pair["goal"])
        hold = torch.zeros(1, scene["search"]["horizon"], 7)  # standing still: the energy every plan must beat
        hold_energy = float(trajectory_energy(wm.rollout(rep, pair["state"], hold)[0], goal)[0])
        for name in planners:  # warm-up: allocations, RoPE tables, autograd
            make_planner(wm, CEMConfig(planner=name, **scene["search"], iterations=1)).plan(rep, pair["state"], goal)
        for seed in range(seeds):
            for budget in budgets:
                for name in planners:
                    cfg = CEMConfig(planner=name, **scene["search"], iterations=10**6, time_budget_s=budget)
                    result = make_planner(wm, cfg).plan(rep, pair["state"], goal, seed=seed)
                    row = dict(
                        scene=scene["name"],
                        pair=pair["name"],
                        seed=seed,
                        planner=name,
                        budget_s=budget,
                        energy=result.energy,
                        gain_over_hold=hold_energy - result.energy,
                        wall_s=result.wall_time,
                        iterations=len(result.energy_history),
                        samples_evaluated=result.samples_evaluated,
                    )
                    if pair["goal_xyz"] is not None:
                        row["plan_to_goal_cm"] = float(
                            (result.predicted_states[-1, :3] - pair["goal_xyz"]).norm() * 100
                        )
                    rows.append(row)
                    print(f"planner_quality: {row}", file=sys.stderr)
    return rows


def closed_loop(
    planners: list[str], budget: float, episodes: int, seed: int, out: Path, precision: str = DEFAULT_PRECISION
) -> dict[str, Any]:
    """Sim reach success per planner: the one closed loop (`vjepa2-sim-eval`), `budget` s of search per step."""
    from vjepa2_ros.sim.evaluate import EvalConfig, run_policies

    results: dict[str, Any] = {}
    for name in planners:
        overrides = {"cem.planner": name, "cem.time_budget_s": budget, "cem.iterations": 10_000}
        cfg = EvalConfig(episodes=episodes, seed=seed, planner_overrides=overrides, precision=precision)

        def log(msg: str, name: str = name) -> None:
            print(f"planner_quality closed loop {name}: {msg}", file=sys.stderr)

        ran = run_policies(cfg, ["planner"], str(SIM_MODEL), out / f"closed_loop_{name}", via_ros=False, log=log)
        summary = ran["policies"]["planner"]["summary"]
        keep = ("success_rate_3cm", "success_rate_5cm", "mean_final_distance_m", "median_final_distance_m")
        results[name] = {k: summary[k] for k in keep + ("plan_s_per_step", "episodes")}
    return dict(budget_s=budget, seeds=[seed, seed + episodes - 1], planners=results)


def summarise(rows: list[dict]) -> dict[str, Any]:
    """Median over pairs and seeds of each (scene, planner, budget): energy, wall time, distance to goal."""
    table: dict[str, Any] = {}
    for row in rows:
        key = table.setdefault(row["scene"], {}).setdefault(row["planner"], {}).setdefault(str(row["budget_s"]), [])
        key.append(row)
    out: dict[str, Any] = {}
    for scene, by_planner in table.items():
        out[scene] = {}
        for planner, by_budget in by_planner.items():
            out[scene][planner] = {}
            for budget, group in by_budget.items():
                cell = {
                    k: statistics.median(r[k] for r in group)
                    for k in ("energy", "gain_over_hold", "wall_s", "iterations", "plan_to_goal_cm")
                    if k in group[0]
                }
                out[scene][planner][budget] = cell
    return out


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenes = list(summary)
    fig, axes = plt.subplots(1, len(scenes), figsize=(5.5 * len(scenes), 4), squeeze=False)
    for ax, scene in zip(axes[0], scenes):
        for planner, by_budget in summary[scene].items():
            cells = sorted(by_budget.values(), key=lambda c: c["wall_s"])
            ax.plot([c["wall_s"] for c in cells], [c["energy"] for c in cells], marker="o", label=planner)
        ax.set_xscale("log")
        ax.set_xlabel("wall time of the planning call (s, median)")
        ax.set_ylabel("energy of the returned plan (median)")
        ax.set_title(f"{scene}: energy vs planning time")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="planner_quality", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/planner_quality", help="directory for planner_quality.json and .png")
    p.add_argument("--planners", default=",".join(PLANNERS), help=f"comma-separated subset of {sorted(PLANNERS)}")
    p.add_argument("--budgets", default=",".join(str(b) for b in BUDGETS), help="wall-time budgets (s)")
    p.add_argument("--scenes", default="franka,sim", help="comma-separated subset of franka,sim, or none")
    p.add_argument("--sim-pairs", type=int, default=3, help="simulator start/goal pairs")
    p.add_argument("--sim-seed", type=int, default=1000, help="pair i uses seed sim-seed+i")
    p.add_argument("--seeds", type=int, default=1, help="planner seeds per pair")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default=DEFAULT_PRECISION, choices=PRECISIONS, help="world model matmul precision")
    p.add_argument("--closed-loop-episodes", type=int, default=0, help="sim reach episodes per planner (0: skip)")
    p.add_argument("--closed-loop-budget", type=float, default=0.25, help="search seconds per closed-loop step")
    p.add_argument("--closed-loop-seed", type=int, default=1000, help="episode i uses seed closed-loop-seed+i")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    planners = [p for p in args.planners.split(",") if p]
    scenes = [s for s in args.scenes.split(",") if s and s != "none"]
    try:
        budgets = [float(b) for b in args.budgets.split(",") if b]
    except ValueError:
        parser.error(f"--budgets must be comma-separated numbers, got {args.budgets!r}")
    if bad := sorted(set(planners) - set(PLANNERS)):
        parser.error(f"unknown planners {bad}; choose from {sorted(PLANNERS)}")
    if bad := sorted(set(scenes) - {"franka", "sim"}):
        parser.error(f"unknown scenes {bad}; choose from franka, sim")
    if not budgets or min(budgets) <= 0 or args.sim_pairs < 1 or args.seeds < 1:
        parser.error("budgets must be > 0, --sim-pairs and --seeds >= 1")
    if args.closed_loop_episodes < 0 or args.closed_loop_budget <= 0:
        parser.error("--closed-loop-episodes must be >= 0 and --closed-loop-budget > 0")
    if not scenes and not args.closed_loop_episodes:
        parser.error("nothing to run: give --scenes or --closed-loop-episodes")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        rows = []
        for scene in scenes:
            if scene == "franka":
                built = franka_scene(0, args.precision)
            else:
                built = sim_scene(args.sim_pairs, args.sim_seed, args.precision)
            rows += run_scene(built, planners, budgets, args.seeds)
        loop = None
        if args.closed_loop_episodes:
            eps, budget = args.closed_loop_episodes, args.closed_loop_budget
            loop = closed_loop(planners, budget, eps, args.closed_loop_seed, Path(args.out), args.precision)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"planner_quality: error: {exc}", file=sys.stderr)
        return 2
    summary = summarise(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = dict(
        summary=summary,
        rows=rows,
        budgets_s=budgets,
        planners=planners,
        searches=dict(franka=FRANKA_SEARCH, sim=SIM_SEARCH),
        franka_model=FRANKA_MODEL,
        closed_loop=loop,
        threads=args.threads,
        precision=args.precision,
        wall_s=time.perf_counter() - start,
        torch=torch.__version__,
    )
    (out / "planner_quality.json").write_text(json.dumps(report, indent=1, default=str))
    if summary:
        plot(summary, out / "planner_quality.png")
    for scene, by_planner in summary.items():
        print(f"{scene}: median energy of the returned plan (gain over standing still) [wall s] per budget")
        for planner, by_budget in by_planner.items():
            cells = "  ".join(
                f"{b}s: {c['energy']:.5f} ({c['gain_over_hold']:.2e}) [{c['wall_s']:.2f}]"
                + (f" {c['plan_to_goal_cm']:.1f}cm" if "plan_to_goal_cm" in c else "")
                for b, c in by_budget.items()
            )
            print(f"  {planner:9s} {cells}")
    if loop is not None:
        print(f"closed-loop sim reach, {loop['budget_s']} s of search per step, seeds {loop['seeds']}:")
        for planner, r in loop["planners"].items():
            print(
                f"  {planner:9s} within 3 cm {r['success_rate_3cm']:.0%}, 5 cm {r['success_rate_5cm']:.0%}, "
                f"mean final {r['mean_final_distance_m'] * 100:.1f} cm, {r['plan_s_per_step']:.3f} s/step"
            )
    print(f"wrote {out / 'planner_quality.json'}" + (f" and {out / 'planner_quality.png'}" if summary else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
