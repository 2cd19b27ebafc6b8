"""`vjepa2-sim-eval`: closed-loop goal-image planning in the simulator, with baselines.

Every policy sees the same random starts and goals (episode i uses seed `--seed + i`). Success within 3 cm and
within 5 cm of the goal at the end of the step budget (grip for reach, block for push and pick-and-place; the
summary of `vjepa2_ros.sim.episodes`, shared with the scene probe and the via-ROS runs). Policies:
  planner  the planner node's closed-loop controller (vjepa2_core.planning.controller) with the node's settings,
           read from the task's params file (`--params`) plus `--set NAME=VALUE`; in-process by default, or
           through the real simulator and planner nodes over DDS with `--via-ros`;
  random   uniform random deltas (lower bound; random gripper moves where the gripper is planned);
  oracle   the task's scripted demonstrator on true positions (upper bound for the step budget).
The planner's goals follow the demonstration protocol: `--subgoals K` (0, 1, 2) = the goal image plus K frames of
one scripted demonstration, switched by the controller's rule (the params file's `subgoal_steps`, or a plateau);
`--oracle-every N` (diagnostic only) = the demonstrator's frame every N steps, then the goal image. The task
(`--task`, any registered in `vjepa2_ros.sim.tasks`) gives the scene, shipped model and params.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from vjepa2_core.planning.cem import config_to_dict
from vjepa2_core.planning.settings import PlanningSettings, planning_values, read_params_file, settings_from_values
from vjepa2_core.planning.world_model import DEFAULT_PRECISION, PRECISIONS
from vjepa2_ros.sim.env import FetchSim, SimConfig, SimError
from vjepa2_ros.sim.episodes import (
    MAX_SUBGOALS,
    OraclePolicy,
    RandomPolicy,
    add_protocol_arguments,
    default_subgoals,
    goal_images,
    protocol_overrides,
    run_episodes,
)
from vjepa2_ros.sim.paths import SIM_PLANNER_PARAMS, ConfigFileError, config_file
from vjepa2_ros.sim.perturb import PERTURBATIONS, make_sim, parse_perturbation
from vjepa2_ros.sim.tasks import TaskError, get_task, task_names

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
    planner_params: str = str(SIM_PLANNER_PARAMS)
    subgoals: int = 0  # the demonstration protocol: K demonstration frames before the goal image (0, 1, 2)
    oracle_every: int = 0  # diagnostic only: the demonstrator's frame every N steps instead (0 = off)
    planner_overrides: dict[str, Any] = field(default_factory=dict)
    precision: str = DEFAULT_PRECISION  # the world model's matmul precision (the node's model.precision)

    def planning(self) -> PlanningSettings:
        """The controller settings the planner node would run with this params file and these overrides."""
        values = planning_values(read_params_file(config_file(self.planner_params)))
        return settings_from_values({**values, **self.planner_overrides})

    def steps(self) -> int:
        return self.max_steps if self.max_steps is not None else self.planning().rules.max_steps


# ------------------------------------------------------------------------------------------------------- policies
class PlannerPolicy:
    """Goal-image planning through the closed-loop controller the planner node runs (same settings, same rules)."""

    name = "planner"

    def __init__(self, world_model, settings: PlanningSettings, seed: int = 0, subgoals: int = 0, oracle_every=0):
        from vjepa2_core.planning.controller import ClosedLoopController

        self.controller = ClosedLoopController(world_model, settings.cem, settings.limits, settings.rules)
        self.seed, self.subgoals, self.oracle_every = seed, subgoals, oracle_every
        self.calls = 0

    def reset(self, sim: FetchSim) -> None:
        self.controller.start(goal_images(sim, self.subgoals, self.oracle_every))

    def act(self, sim: FetchSim, image: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, dict]:
        self.calls += 1
        d = self.controller.step(image, state, seed=self.seed * 100_003 + self.calls)
        info = {"energy_now": d.energy_now, "status": d.status, "hold": d.status != "move", "notes": d.notes}
        info["subgoal"] = d.subgoal
        if d.plan is not None:
            info.update(energy_plan=float(d.plan.energy), energy_still=d.still_energy)
        if d.action is None:  # goal reached, or the plan was refused (non-finite, too late)
            return np.zeros(7), {**info, "stop": True}
        return d.action, info


# ------------------------------------------------------------------------------------------------------ episodes
def evaluate(sim: FetchSim, policy, cfg: EvalConfig, strip_path: Path | None = None, log=print) -> dict:
    """Run cfg.episodes episodes of one policy (the shared loop); a film strip of the first one if `strip_path`."""
    seeds = list(range(cfg.seed, cfg.seed + cfg.episodes))
    return run_episodes(sim, policy, seeds, cfg.steps(), strip_path, log=log)


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
    "subgoal_steps": "subgoal_steps",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vjepa2-sim-eval", description=__doc__.split("\n")[0])
    d = EvalConfig()
    p.add_argument("--episodes", type=int, default=d.episodes)
    p.add_argument("--task", default=d.task, choices=task_names())
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--model", default=None, help="AC checkpoint (default: the task's shipped sim model)")
    p.add_argument("--policies", default=",".join(POLICIES), help=f"comma-separated subset of {POLICIES}")
    p.add_argument("--max-steps", type=int, default=None, help="steps per episode (default: the params file's)")
    p.add_argument("--seed", type=int, default=d.seed, help="episode i uses seed+i for its start and goal")
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--params", default=None, help="planner node params file (default: the task's sim params)")
    add_protocol_arguments(p)
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
        planner_params=str(args.params or get_task(args.task).params),
        subgoals=default_subgoals(args.task, args.subgoals, args.oracle_every),
        oracle_every=args.oracle_every,
        planner_overrides={**protocol_overrides(args.oracle_every), **parse_overrides(args)},
        precision=args.precision,
    )
    if cfg.episodes < 1 or cfg.steps() < 1:
        raise ValueError("--episodes and --max-steps must be >= 1")
    if not 0 <= cfg.subgoals <= MAX_SUBGOALS or cfg.oracle_every < 0 or (cfg.subgoals and cfg.oracle_every):
        raise ValueError(f"need --subgoals in 0..{MAX_SUBGOALS}, --oracle-every >= 0, not both (got {cfg.subgoals}, "
                         f"{cfg.oracle_every})")  # fmt: skip
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
                policy = PlannerPolicy(world_model, settings, cfg.seed, cfg.subgoals, cfg.oracle_every)
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
        model = str(args.model or get_task(cfg.task).model)
        results = run_policies(cfg, names, model, out, args.via_ros, log)
    except (SimError, ConfigFileError, TaskError, ValueError) as exc:
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
