"""`vjepa2-sim-eval`: closed-loop goal-image planning in the simulator, with baselines.

Every policy sees the same random starts and goals (episode i uses seed `--seed + i`). Success = end effector
within 3 cm of the goal position at the end of the step budget. Policies:
  planner  the planner node's closed-loop controller (vjepa2_core.planning.controller) with the node's settings,
           read from its params file (`--params`, default config/sim_planner.yaml) plus `--set NAME=VALUE`;
           in-process by default, or through the real simulator and planner nodes over DDS with `--via-ros`;
  random   uniform random deltas (lower bound);
  oracle   scripted straight-line moves using the true goal position (upper bound for the step budget).
Push (`--task push`): success = block within 3 / 5 cm of its goal; the shipped push model and
config/sim_push_planner.yaml by default; the planner's goals are the scripted pusher's rollout, one frame every
`--push-subgoals` steps, then the goal image; the oracle is the scripted pusher on true positions.
Pick-and-place (`--task pick_and_place`): the same with the gripper in the action (random actions include random
gripper moves); the planner's goals are the scripted picker's rollout; the oracle is the scripted picker.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from vjepa2_core.planning.cem import config_to_dict
from vjepa2_core.planning.settings import PlanningSettings, planning_values, read_params_file, settings_from_values
from vjepa2_core.planning.world_model import DEFAULT_PRECISION, PRECISIONS
from vjepa2_ros.sim.env import FetchSim, SimConfig, SimError, scripted_pick_action, scripted_push_action
from vjepa2_ros.sim.filmstrip import save_film_strip
from vjepa2_ros.sim.paths import SIM_PLANNER_PARAMS, TASK_DEFAULTS, ConfigFileError, config_file
from vjepa2_ros.sim.perturb import PERTURBATIONS, make_sim, parse_perturbation

POLICIES = ("planner", "random", "oracle")


@dataclass
class EvalConfig:
    """What is measured. How the planner runs comes from the planner node's params file (`planner_params`), with
    `planner_overrides` (flat names such as `cem.samples`) on top: the evaluation runs the node's controller."""

    task: str = "reach"
    episodes: int = 20
    max_steps: int | None = None  # None: the params file's max_steps (the node's ReachGoal default)
    seed: int = 1000
    image_size: int = 64
    perturb: str = ""  # a visual perturbation of the scene (vjepa2_ros.sim.perturb), e.g. "light=0.6"; "" = none
    success_m: float = 0.03
    near_m: float = 0.05
    planner_params: str = str(SIM_PLANNER_PARAMS)
    push_subgoals: int = 1  # push: the planner's goals are the scripted pusher's rollout, a frame every N steps, then
    # the goal image (FetchSim.subgoal_images; the probe's choice, PUSH_SCENE.md); 0 = the goal image alone
    planner_overrides: dict[str, Any] = field(default_factory=dict)
    precision: str = DEFAULT_PRECISION  # the world model's matmul precision (the node's model.precision)

    def planning(self) -> PlanningSettings:
        """The controller settings the planner node would run with this params file and these overrides."""
        values = planning_values(read_params_file(config_file(self.planner_params)))
        return settings_from_values({**values, **self.planner_overrides})

    def steps(self) -> int:
        return self.max_steps if self.max_steps is not None else self.planning().rules.max_steps


# ------------------------------------------------------------------------------------------------------- policies
class RandomPolicy:
    name = "random"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def reset(self, sim: FetchSim) -> None:
        pass

    def act(self, sim: FetchSim, image: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, dict]:
        action = np.zeros(7)
        action[:3] = self.rng.uniform(-sim.cfg.max_step, sim.cfg.max_step, 3)
        if sim.cfg.task == "pick_and_place":
            action[6] = self.rng.uniform(-1.0, 1.0)  # the gripper is part of the action
        return action, {}


class OraclePolicy:
    """Moves straight at the true goal, each coordinate clipped to the per-step limit (what CEM's box allows)."""

    name = "oracle"

    def reset(self, sim: FetchSim) -> None:
        if sim.cfg.task not in ("reach", "push", "pick_and_place"):
            raise SimError("the scripted oracle supports the reach, push and pick_and_place tasks")

    def act(self, sim: FetchSim, image: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, dict]:
        if sim.cfg.task == "push":
            return scripted_push_action(sim), {}  # the scripted pusher on true positions
        if sim.cfg.task == "pick_and_place":
            return scripted_pick_action(sim), {}  # the scripted picker on true positions
        action = np.zeros(7)
        action[:3] = np.clip(sim.goal_ee - state[:3], -sim.cfg.max_step, sim.cfg.max_step)
        return action, {}


class PlannerPolicy:
    """Goal-image planning through the closed-loop controller the planner node runs (same settings, same rules)."""

    name = "planner"

    def __init__(self, world_model, settings: PlanningSettings, seed: int = 0, push_subgoals: int = 0):
        from vjepa2_core.planning.controller import ClosedLoopController

        self.controller = ClosedLoopController(world_model, settings.cem, settings.limits, settings.rules)
        self.seed, self.push_subgoals = seed, push_subgoals
        self.calls = 0

    def reset(self, sim: FetchSim) -> None:
        # FetchSim.subgoal_images ends with the goal image and is the goal image alone for reach
        self.controller.start(sim.subgoal_images(every=self.push_subgoals) if self.push_subgoals else sim.goal_image())

    def act(self, sim: FetchSim, image: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, dict]:
        self.calls += 1
        d = self.controller.step(image, state, seed=self.seed * 100_003 + self.calls)
        info = {"energy_now": d.energy_now, "status": d.status, "hold": d.status != "move", "notes": d.notes}
        if d.plan is not None:
            info.update(energy_plan=float(d.plan.energy), energy_still=d.still_energy)
        if d.action is None:  # goal reached, or the plan was refused (non-finite, too late)
            return np.zeros(7), {**info, "stop": True}
        return d.action, info


# ------------------------------------------------------------------------------------------------------ episodes
def run_episode(sim: FetchSim, policy, seed: int, cfg: EvalConfig, keep_frames: bool = False) -> dict:
    """One closed-loop episode from a seeded random start; returns distances, steps and timing."""
    state = sim.reset(seed=seed)
    start, max_steps = sim.distance_to_goal(), cfg.steps()
    policy.reset(sim)
    frames = [sim.render()]
    distances, plan_s, moved, first_success = [start], [], 0, None
    for t in range(max_steps):
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


def load_world_model(model: str | Path, precision: str = DEFAULT_PRECISION):
    from vjepa2_core.planning import WorldModel

    path = Path(model)
    if not path.exists():
        raise SimError(
            f"world model {path} not found; train one (config/train/sim_*.yaml) or pass --model PATH, "
            "or evaluate only the baselines with --policies random,oracle"
        )
    return WorldModel.from_checkpoint(str(path), precision=precision)


# ------------------------------------------------------------------------------------------------------------ CLI
SHORTHANDS = {  # flag -> planner setting (any other setting: --set NAME=VALUE)
    "planner": "cem.planner",
    "horizon": "cem.horizon",
    "samples": "cem.samples",
    "topk": "cem.topk",
    "iterations": "cem.iterations",
    "maxnorm": "cem.maxnorm",
    "momentum_std": "cem.momentum_std",
    "hold_margin": "hold_margin",
    "energy_threshold": "energy_threshold",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vjepa2-sim-eval", description=__doc__.split("\n")[0])
    d = EvalConfig()
    p.add_argument("--episodes", type=int, default=d.episodes)
    p.add_argument("--task", default=d.task, choices=["reach", "push", "pick_and_place"])
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--model", default=None, help="AC checkpoint (default: the task's shipped sim model)")
    p.add_argument("--policies", default=",".join(POLICIES), help=f"comma-separated subset of {POLICIES}")
    p.add_argument("--max-steps", type=int, default=None, help="steps per episode (default: the params file's)")
    p.add_argument("--seed", type=int, default=d.seed, help="episode i uses seed+i for its start and goal")
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--params", default=None, help="planner node params file (default: the task's sim params)")
    p.add_argument("--push-subgoals", type=int, default=d.push_subgoals, help="push: sub-goal frame every N steps")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="planner setting override")
    for flag, name in SHORTHANDS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, default=None, help=f"= --set {name}=VALUE")
    p.add_argument("--via-ros", action="store_true", help="run the planner policy through the ROS 2 nodes (DDS)")
    p.add_argument(
        "--perturb",
        default=d.perturb,
        metavar="NAME[=AMOUNT]",
        help=f"visual change of the scene (current and goal images): one of {sorted(PERTURBATIONS)}",
    )
    p.add_argument("--out", default="runs/sim_eval", help="directory for results.json and the film strips")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument(
        "--precision", default=DEFAULT_PRECISION, choices=PRECISIONS, help="world model matmul precision (bf16: AMX)"
    )
    return p


def parse_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """--set NAME=VALUE (YAML-typed values) and the shorthand flags -> flat planner settings."""
    pairs = list(args.set) + [
        f"{SHORTHANDS[k]}={getattr(args, k)}" for k in SHORTHANDS if getattr(args, k) is not None
    ]
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--set takes NAME=VALUE, got {pair!r}")
        overrides[name.strip()] = yaml.safe_load(value)
    return overrides


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    cfg = EvalConfig(
        task=args.task,
        episodes=args.episodes,
        max_steps=args.max_steps,
        seed=args.seed,
        image_size=args.image_size,
        perturb=args.perturb,
        planner_params=str(args.params or TASK_DEFAULTS[args.task][1]),
        push_subgoals=args.push_subgoals,
        planner_overrides=parse_overrides(args),
        precision=args.precision,
    )
    if cfg.episodes < 1 or cfg.steps() < 1:
        raise ValueError("--episodes and --max-steps must be >= 1")
    if cfg.push_subgoals < 0:
        raise ValueError(f"--push-subgoals must be >= 0, got {cfg.push_subgoals}")
    parse_perturbation(cfg.perturb)  # a bad spec fails before anything is simulated
    if cfg.perturb and args.via_ros:
        raise ValueError("--perturb is in-process only (the simulator node renders the unperturbed scene)")
    return cfg


def format_table(summaries: list[dict]) -> str:
    cols = [("policy", "{}"), ("success_rate_3cm", "{:.0%}"), ("success_rate_5cm", "{:.0%}"),
            ("ever_within_3cm", "{:.0%}"), ("mean_final_distance_m", "{:.3f}"),
            ("median_final_distance_m", "{:.3f}"), ("mean_start_distance_m", "{:.3f}"), ("mean_steps", "{:.1f}"),
            ("plan_s_per_step", "{:.3f}")]  # fmt: skip
    rows = [[name for name, _ in cols]] + [[fmt.format(s[name]) for name, fmt in cols] for s in summaries]
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)


def run_policies(cfg: EvalConfig, names: list[str], model: str, out: Path, via_ros: bool, log) -> dict:
    settings = cfg.planning()  # fails before anything is simulated
    results: dict = {"config": config_to_json(cfg, settings), "model": model if "planner" in names else None}
    results["policies"] = {}
    world_model = load_world_model(model, cfg.precision) if "planner" in names and not via_ros else None
    if via_ros and "planner" in names:
        from vjepa2_ros.sim.via_ros import evaluate_via_ros

        results["policies"]["planner_ros"] = evaluate_via_ros(cfg, model, out, log=log)
        names = [n for n in names if n != "planner"]
    sim = make_sim(SimConfig(task=cfg.task, image_size=cfg.image_size), cfg.perturb, seed=cfg.seed)
    try:
        for name in names:
            if name == "planner":
                policy = PlannerPolicy(world_model, settings, seed=cfg.seed, push_subgoals=cfg.push_subgoals)
            else:
                policy = RandomPolicy(cfg.seed) if name == "random" else OraclePolicy()
            results["policies"][name] = evaluate(sim, policy, cfg, out / f"filmstrip_{name}.png", log=log)
    finally:
        sim.close()
    return results


def config_to_json(cfg: EvalConfig, settings: PlanningSettings) -> dict:
    return {
        **asdict(cfg),
        "max_steps": cfg.steps(),
        "cem": config_to_dict(settings.cem),
        "safety": asdict(settings.limits),
        "rules": asdict(settings.rules),
    }


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    unknown = sorted(set(names) - set(POLICIES))
    if unknown or not names:
        parser.error(f"unknown policies {unknown}; choose from {POLICIES}")
    out = Path(args.out)
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    try:
        cfg = config_from_args(args)
        model = str(args.model or TASK_DEFAULTS[cfg.task][0])
        results = run_policies(cfg, names, model, out, args.via_ros, log)
    except (SimError, ConfigFileError, ValueError) as exc:
        parser.error(str(exc))
    except RuntimeError as exc:  # DemoError: a node did not come up or answer in time (--via-ros)
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    summaries = [r["summary"] for r in results["policies"].values()]
    if args.json:
        print(json.dumps({"config": results["config"], "model": results["model"], "summaries": summaries}, indent=1))
    else:
        print(format_table(summaries))
        print(f"results: {out / 'results.json'}; film strips: {out}/filmstrip_*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
