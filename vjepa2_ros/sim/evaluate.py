"""`vjepa2-sim-eval`: closed-loop goal-image planning in the simulator, in-process (no ROS), with baselines.

Every policy sees the same random starts and goals (episode i uses seed `--seed + i`). Success = end effector
within 3 cm of the goal position at the end of the step budget. Policies:
  planner  CEM on the world model toward the encoded goal image, with a hold rule: if no planned action is
           predicted to beat doing nothing (by `--hold-margin`), the arm holds still; optional early stop when
           the current image's goal energy falls to `--energy-threshold`;
  random   uniform random deltas (lower bound);
  oracle   scripted straight-line moves using the true goal position (upper bound for the step budget).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from vjepa2_ros.sim.env import FetchSim, SimConfig, SimError
from vjepa2_ros.sim.filmstrip import save_film_strip

SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "models" / "sim_reach.safetensors"
POLICIES = ("planner", "random", "oracle")


@dataclass
class EvalConfig:
    """What is measured and how the planner is run (default CEM: the shipped model's measured setting, < 1 s/step)."""

    task: str = "reach"
    episodes: int = 20
    max_steps: int = 20
    seed: int = 1000
    image_size: int = 64
    success_m: float = 0.03
    near_m: float = 0.05
    horizon: int = 1
    samples: int = 100
    topk: int = 10
    iterations: int = 3
    maxnorm: float = 0.15  # CEM per-axis bound (m): the shipped model predicts moves of up to 4 steps at once
    momentum_std: float = 0.15  # CEM std momentum: the search narrows within 3 iterations (0.95, the reference
    # cem() default, kept it ~15 cm wide, so near the goal no small move was sampled and the hold rule froze the arm)
    hold_margin: float = 0.0
    energy_threshold: float = 0.0


# ------------------------------------------------------------------------------------------------------- policies
def scale_to_step(delta: np.ndarray, max_step: float) -> np.ndarray:
    """Shrink a planned move (it may span several steps) to one step, keeping its direction (model-predictive)."""
    peak = float(np.abs(delta).max())
    return delta * (max_step / peak) if peak > max_step else delta


class RandomPolicy:
    name = "random"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def reset(self, sim: FetchSim) -> None:
        pass

    def act(self, sim: FetchSim, image: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, dict]:
        action = np.zeros(7)
        action[:3] = self.rng.uniform(-sim.cfg.max_step, sim.cfg.max_step, 3)
        return action, {}


class OraclePolicy:
    """Moves straight at the true goal, each coordinate clipped to the per-step limit (what CEM's box allows)."""

    name = "oracle"

    def reset(self, sim: FetchSim) -> None:
        if sim.cfg.task != "reach":
            raise SimError("the scripted oracle only supports the reach task")

    def act(self, sim: FetchSim, image: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, dict]:
        action = np.zeros(7)
        action[:3] = np.clip(sim.goal_ee - state[:3], -sim.cfg.max_step, sim.cfg.max_step)
        return action, {}


class PlannerPolicy:
    """Goal-image CEM on a V-JEPA 2-AC world model, plus the hold / stop rules."""

    name = "planner"

    def __init__(self, world_model, cfg: EvalConfig, seed: int = 0):
        from vjepa2_core.planning import CEMConfig, CEMPlanner

        self.wm, self.cfg, self.seed = world_model, cfg, seed
        cem = CEMConfig.reference_cem_defaults(
            horizon=cfg.horizon,
            samples=cfg.samples,
            topk=cfg.topk,
            iterations=cfg.iterations,
            maxnorm=cfg.maxnorm,
            momentum_std=cfg.momentum_std,
            axis={"gripper": 0.0},  # reach/push keep the gripper blocked
        )
        self.planner = CEMPlanner(world_model, cem)
        self.goal_rep: torch.Tensor | None = None
        self.calls = 0

    def reset(self, sim: FetchSim) -> None:
        self.goal_rep = self.wm.encode_goal(sim.goal_image())

    def act(self, sim: FetchSim, image: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, dict]:
        from vjepa2_core.planning.hold import decide_hold

        rep = self.wm.encode(image)
        state_t = torch.as_tensor(state, dtype=torch.float32)
        now = float((rep - self.goal_rep).abs().mean())
        if self.cfg.energy_threshold > 0 and now <= self.cfg.energy_threshold:
            return np.zeros(7), {"energy_now": now, "hold": True, "stop": True}
        self.calls += 1
        plan = self.planner.plan(rep, state_t, self.goal_rep, seed=self.seed * 100_003 + self.calls)
        d = decide_hold(self.wm, rep, state_t, self.goal_rep, plan, self.planner.config, self.cfg.hold_margin)
        action = np.zeros(7) if d.hold else plan.first_action.numpy().astype(np.float64)
        action[:3] = scale_to_step(action[:3], sim.cfg.max_step)
        return action, {
            "energy_now": now,
            "energy_plan": d.plan_energy,
            "energy_still": d.still_energy,
            "hold": d.hold,
        }


# ------------------------------------------------------------------------------------------------------ episodes
def run_episode(sim: FetchSim, policy, seed: int, cfg: EvalConfig, keep_frames: bool = False) -> dict:
    """One closed-loop episode from a seeded random start; returns distances, steps and timing."""
    state = sim.reset(seed=seed)
    start = sim.distance_to_goal()
    policy.reset(sim)
    frames = [sim.render()]
    distances, plan_s, moved, first_success = [start], [], 0, None
    for t in range(cfg.max_steps):
        t0 = time.perf_counter()
        action, info = policy.act(sim, frames[-1], state)
        plan_s.append(time.perf_counter() - t0)
        if info.get("stop"):
            break
        moved += int(np.linalg.norm(action[:3]) > 1e-6)
        state = sim.step(action)
        frames.append(sim.render())
        distances.append(sim.distance_to_goal())
        if first_success is None and distances[-1] < cfg.success_m:
            first_success = t + 1
    result = {
        "seed": seed,
        "start_distance": start,
        "final_distance": distances[-1],
        "min_distance": min(distances),
        "success": distances[-1] < cfg.success_m,
        "near": distances[-1] < cfg.near_m,
        "steps": len(distances) - 1,
        "moving_steps": moved,
        "first_success_step": first_success,
        "plan_s_per_step": float(np.mean(plan_s)) if plan_s else 0.0,
    }
    if keep_frames:
        result["frames"], result["goal_image"], result["distances"] = frames, sim.goal_image(), distances
    return result


def summarise(name: str, episodes: list[dict], cfg: EvalConfig) -> dict:
    final = np.array([e["final_distance"] for e in episodes])
    reached = [e["first_success_step"] for e in episodes if e["first_success_step"] is not None]
    return {
        "policy": name,
        "episodes": len(episodes),
        "success_rate_3cm": float(np.mean([e["success"] for e in episodes])),
        "success_rate_5cm": float(np.mean([e["near"] for e in episodes])),
        "ever_within_3cm": float(np.mean([e["min_distance"] < cfg.success_m for e in episodes])),
        "mean_final_distance_m": float(final.mean()),
        "median_final_distance_m": float(np.median(final)),
        "mean_start_distance_m": float(np.mean([e["start_distance"] for e in episodes])),
        "mean_steps": float(np.mean([e["steps"] for e in episodes])),
        "mean_moving_steps": float(np.mean([e["moving_steps"] for e in episodes])),
        "mean_steps_to_3cm": float(np.mean(reached)) if reached else None,
        "plan_s_per_step": float(np.mean([e["plan_s_per_step"] for e in episodes])),
    }


def evaluate(sim: FetchSim, policy, cfg: EvalConfig, strip_path: Path | None = None, log=print) -> dict:
    """Run cfg.episodes episodes of one policy; writes a film strip of the first episode if `strip_path`."""
    episodes, t0 = [], time.perf_counter()
    for i in range(cfg.episodes):
        ep = run_episode(sim, policy, cfg.seed + i, cfg, keep_frames=(i == 0 and strip_path is not None))
        if "frames" in ep:
            labels = [f"t={t} {d * 100:.1f}cm" for t, d in enumerate(ep.pop("distances"))]
            save_film_strip(strip_path, ep.pop("frames"), ep.pop("goal_image"), labels=labels)
        episodes.append(ep)
        start_cm, final_cm = ep["start_distance"] * 100, ep["final_distance"] * 100
        log(
            f"[{policy.name}] episode {i + 1}/{cfg.episodes}: {start_cm:.1f} -> {final_cm:.1f} cm "
            f"in {ep['steps']} steps ({ep['plan_s_per_step']:.3f} s/step)"
        )
    summary = summarise(policy.name, episodes, cfg)
    summary["wall_s"] = time.perf_counter() - t0
    if strip_path is not None:
        summary["film_strip"] = str(strip_path)
    return {"summary": summary, "episodes": episodes}


def load_world_model(model: str | Path):
    from vjepa2_core.planning import WorldModel

    path = Path(model)
    if not path.exists():
        raise SimError(
            f"world model {path} not found; train one (config/train/sim_*.yaml) or pass --model PATH, "
            "or evaluate only the baselines with --policies random,oracle"
        )
    return WorldModel.from_checkpoint(str(path))


# ------------------------------------------------------------------------------------------------------------ CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vjepa2-sim-eval", description=__doc__.split("\n")[0])
    d = EvalConfig()
    p.add_argument("--episodes", type=int, default=d.episodes)
    p.add_argument("--task", default=d.task, choices=["reach", "push"])
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--model", default=str(SHIPPED_MODEL), help="AC checkpoint (default: the shipped sim model)")
    p.add_argument("--policies", default=",".join(POLICIES), help=f"comma-separated subset of {POLICIES}")
    p.add_argument("--max-steps", type=int, default=d.max_steps)
    p.add_argument("--seed", type=int, default=d.seed, help="episode i uses seed+i for its start and goal")
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--horizon", type=int, default=d.horizon)
    p.add_argument("--samples", type=int, default=d.samples)
    p.add_argument("--topk", type=int, default=d.topk)
    p.add_argument("--iterations", type=int, default=d.iterations)
    p.add_argument("--maxnorm", type=float, default=d.maxnorm, help="CEM per-axis bound of a planned move (m)")
    p.add_argument("--momentum-std", type=float, default=d.momentum_std, help="CEM std momentum (0..1)")
    p.add_argument("--hold-margin", type=float, default=d.hold_margin, help="hold unless the plan beats stillness")
    p.add_argument("--energy-threshold", type=float, default=d.energy_threshold, help="stop at this goal energy")
    p.add_argument("--out", default="sim_eval", help="directory for results.json and the film strips")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return p.parse_args(argv)


def format_table(summaries: list[dict]) -> str:
    cols = [("policy", "{}"), ("success_rate_3cm", "{:.0%}"), ("success_rate_5cm", "{:.0%}"),
            ("ever_within_3cm", "{:.0%}"), ("mean_final_distance_m", "{:.3f}"),
            ("median_final_distance_m", "{:.3f}"), ("mean_start_distance_m", "{:.3f}"), ("mean_steps", "{:.1f}"),
            ("plan_s_per_step", "{:.3f}")]  # fmt: skip
    rows = [[name for name, _ in cols]] + [[fmt.format(s[name]) for name, fmt in cols] for s in summaries]
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    unknown = sorted(set(names) - set(POLICIES))
    if unknown or not names:
        sys.exit(f"vjepa2-sim-eval: unknown policies {unknown}; choose from {POLICIES}")
    if args.episodes < 1 or args.max_steps < 1:
        sys.exit("vjepa2-sim-eval: --episodes and --max-steps must be >= 1")
    cfg = EvalConfig(**{k: v for k, v in vars(args).items() if k in EvalConfig.__dataclass_fields__})
    out = Path(args.out)
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    results: dict = {"config": asdict(cfg), "model": args.model if "planner" in names else None, "policies": {}}
    sim = None
    try:
        world_model = load_world_model(args.model) if "planner" in names else None  # fail before simulating
        sim = FetchSim(SimConfig(task=cfg.task, image_size=cfg.image_size), seed=cfg.seed)
        for name in names:
            if name == "planner":
                policy = PlannerPolicy(world_model, cfg, seed=cfg.seed)
            else:
                policy = RandomPolicy(cfg.seed) if name == "random" else OraclePolicy()
            results["policies"][name] = evaluate(sim, policy, cfg, out / f"filmstrip_{name}.png", log=log)
    except (SimError, ValueError) as exc:
        sys.exit(f"vjepa2-sim-eval: {exc}")
    finally:
        if sim is not None:
            sim.close()
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    summaries = [r["summary"] for r in results["policies"].values()]
    if args.json:
        print(json.dumps({"config": results["config"], "model": results["model"], "summaries": summaries}, indent=1))
    else:
        print(format_table(summaries))
        print(f"results: {out / 'results.json'}; film strips: {out}/filmstrip_*.png")


if __name__ == "__main__":
    main()
