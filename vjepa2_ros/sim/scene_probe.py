"""`python -m vjepa2_ros.sim.scene_probe`: can a task be solved from its goal images? The true-simulator probe.

Before a model is trained, the scene itself must let the goal images say where the block has to go. The probe
puts the TRUE simulator where the predictor would be: each step it tries a fixed set of candidate moves (state
restored after each), renders every outcome, scores it by the L1 energy of a world model's encoder features
(the shipped reach model's random frozen encoder by default) to the current goal image, and executes the best:
it measures the energy alone. Its goal images are the demonstration protocol's (`--subgoals K`: the goal image
plus K frames of one scripted demonstration, `vjepa2_ros.sim.episodes.goal_images`), stepped through by the
controller's switching rule (`SubgoalSwitch`: `--subgoal-steps` on each, default the task's params file, the
energy threshold, or a plateau, when holding still beats every move). `--oracle-every N` is the old diagnostic
(the demonstrator's frame every N steps). `--policy random` (random candidate moves) and `--policy oracle` (the
task's scripted demonstrator) are the baselines. The episode loop and the summary are `vjepa2-sim-eval`'s
(`vjepa2_ros.sim.episodes`): success within 3 and 5 cm. Any registered task (`vjepa2_ros.sim.tasks`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vjepa2_core.planning.controller import ControllerConfig, SubgoalSwitch
from vjepa2_ros.sim.env import FetchSim, SimConfig, SimError
from vjepa2_ros.sim.episodes import (
    MAX_SUBGOALS,
    OraclePolicy,
    add_protocol_arguments,
    default_subgoals,
    goal_images,
    protocol_overrides,
    run_episodes,
)
from vjepa2_ros.sim.tasks import TaskError, get_task, task_names

POLICIES = ("energy", "random", "oracle")


@dataclass
class ProbeConfig:
    """One probe run: seeds, step budget, policy and the demonstration protocol."""

    task: str = "push"
    seed: int = 500
    episodes: int = 10
    steps: int = 40
    policy: str = "energy"
    subgoals: int = 0  # K demonstration frames besides the goal image (0, 1, 2)
    oracle_every: int = 0  # diagnostic: the demonstrator's frame every N steps instead (0 = off)
    subgoal_threshold: float = 0.0  # move on when the energy to the current sub-goal is at most this (0 = off)
    subgoal_steps: int | None = None  # move on after this many steps on one sub-goal (0 = off; None = the task's)
    plateau: bool = True  # move on when holding still beats every candidate move
    model: str = ""  # world model checkpoint (empty = the shipped reach model)
    encoder_size: int = 0  # px the encoder sees (0 = the model's own; e.g. 128 with 128 px frames: more patches)
    strips: str = ""  # folder for one film strip per episode (empty = none)

    def rules(self) -> ControllerConfig:
        """The controller's switching rules; steps on each goal from the task's planner params by default (the
        oracle diagnostic's own value under `oracle_every`)."""
        steps = self.subgoal_steps
        if steps is None:
            steps = protocol_overrides(self.oracle_every).get("subgoal_steps")
        if steps is None:
            from vjepa2_core.planning.settings import planning_values, read_params_file, settings_from_values
            from vjepa2_ros.sim.paths import config_file

            values = planning_values(read_params_file(config_file(get_task(self.task).params)))
            steps = settings_from_values(values).rules.subgoal_steps
        return ControllerConfig(max_steps=self.steps, subgoal_threshold=self.subgoal_threshold, subgoal_steps=steps)


def candidate_moves(step: float, planar: bool = False, gripper: bool = False) -> np.ndarray:
    """37 moves [37, 7]: hold; flat moves in 16 directions at full step and 8 at 2/5 step (pushing is flat);
    up and down at full and 2/5 step; and 8 moves at 45 degrees up or down in the 4 axis directions.
    planar (a grip held at one height): 33 flat moves [33, 7]: hold, 16 directions at full step, 16 at 2/5.
    gripper: two more, close and open in place (dgripper +1 / -1)."""
    moves = _arm_moves(step, planar)
    if not gripper:
        return moves
    grip = np.zeros((2, 7))
    grip[:, 6] = [1.0, -1.0]
    return np.concatenate([moves, grip])


def _arm_moves(step: float, planar: bool) -> np.ndarray:
    flat16, flat8 = np.arange(16) * np.pi / 8, np.arange(8) * np.pi / 4
    sizes = ((flat16, step), (flat16, 0.4 * step)) if planar else ((flat16, step), (flat8, 0.4 * step))
    flat = [np.stack([np.cos(a), np.sin(a), np.zeros_like(a)], 1) * s for a, s in sizes]
    if planar:
        moves = np.concatenate([np.zeros((1, 3)), *flat])
        return np.concatenate([moves, np.zeros((len(moves), 4))], 1)
    vertical = np.array([[0, 0, 1], [0, 0, -1], [0, 0, 0.4], [0, 0, -0.4]]) * step
    axes = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]])
    slanted = np.array([[*a, z] for a in axes for z in (1, -1)]) / np.sqrt(2) * step
    moves = np.concatenate([np.zeros((1, 3)), *flat, vertical, slanted])
    return np.concatenate([moves, np.zeros((len(moves), 4))], 1)


class EnergyScorer:
    """L1 energy of encoder features between rendered outcomes and a goal image (the planner's objective)."""

    def __init__(self, model_path: str, encoder_size: int = 0):
        from vjepa2_core.planning import WorldModel
        from vjepa2_core.planning.energies import l1_energy

        self.wm = WorldModel.from_checkpoint(model_path)
        patch = int(getattr(self.wm.encoder, "patch_size", 16))
        if encoder_size and (encoder_size % patch or not getattr(self.wm.encoder, "use_rope", False)):
            raise SimError(f"--encoder-size needs a RoPE encoder and a multiple of its {patch} px patch")
        if encoder_size:  # the probe uses the encoder alone; a RoPE encoder encodes any grid of patches
            self.wm.crop_size = int(encoder_size)
        self._l1 = l1_energy

    def energies(self, images: list[np.ndarray], goal: np.ndarray) -> np.ndarray:
        reps = self.wm.encode(np.stack(images))
        return self._l1(reps, self.wm.encode_goal(goal)).cpu().numpy().astype(np.float64)


def outcome_images(sim: FetchSim, moves: np.ndarray) -> list[np.ndarray]:
    """Render the outcome of each move from the current state, restoring the state after each."""
    snap, images = sim.get_snapshot(), []
    for move in moves:
        sim.step(move)
        images.append(sim.render())
        sim.set_snapshot(snap)
    return images


def energy_split(sim: FetchSim, scorer: EnergyScorer, goal: np.ndarray) -> dict[str, float]:
    """Energy to the goal image now, with only the block moved to its goal, with only the arm at its goal pose."""
    now = sim.render()
    snap = sim.get_snapshot()
    sim.place_block(sim.goal)  # the block alone at its goal (the arm is clear of it at reset)
    block_only = sim.render()
    sim.set_snapshot(snap)
    arm_only = sim.scene_image(sim.goal_ee)  # the arm alone at its goal pose, the block where it is
    e = scorer.energies([now, block_only, arm_only], goal)
    return {"now": float(e[0]), "block_at_goal": float(e[1]), "arm_at_goal": float(e[2])}


def probe_moves(sim: FetchSim) -> np.ndarray:
    """The task's candidate moves: flat for a planar pusher, with gripper moves where the gripper is planned."""
    planar = bool(sim.high[2] - sim.low[2] < 1e-9)
    return candidate_moves(sim.cfg.max_step, planar=planar, gripper=sim.task.gripper_in_action)


class EnergyProbePolicy:
    """Greedy one-step search with the true simulator, scored by the energy to the current goal image."""

    name = "energy"

    def __init__(self, scorer: EnergyScorer, cfg: ProbeConfig):
        self.scorer, self.cfg, self.rules = scorer, cfg, cfg.rules()
        self.goals: list[np.ndarray] = []

    def reset(self, sim: FetchSim) -> None:
        self.moves = probe_moves(sim)
        self.goals = goal_images(sim, self.cfg.subgoals, self.cfg.oracle_every)
        self.switch, self.switches, self.t = SubgoalSwitch(len(self.goals), self.rules), [], 0
        self.split = energy_split(sim, self.scorer, self.goals[-1]) if sim.block_half is not None else None

    def act(self, sim: FetchSim, image: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, dict]:
        before = self.switch.index
        self.switch.advance(lambda i: float(self.scorer.energies([image], self.goals[i])[0]))
        energy = self.scorer.energies(outcome_images(sim, self.moves), self.goals[self.switch.index])
        best = int(np.argmin(energy))
        goal = self.switch.index
        if best == 0 and self.cfg.plateau:
            self.switch.plateau()  # holding still beats every move: hold now, the next goal from the next step
        if self.switch.index != before:
            self.switches.append(self.t)
        self.switch.stepped()
        self.t += 1
        return self.moves[best], {"subgoal": goal}

    def episode_info(self) -> dict:
        return {"goal_images": len(self.goals), "subgoal_switches": self.switches, "energy_split": self.split}


class RandomMovePolicy:
    """Random candidate moves (the probe's lower baseline)."""

    name = "random"

    def __init__(self, seed: int):
        self.seed = seed

    def reset(self, sim: FetchSim) -> None:
        self.moves, self.rng = probe_moves(sim), np.random.default_rng(self.seed)
        self.seed += 1

    def act(self, sim: FetchSim, image: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, dict]:
        return self.moves[int(self.rng.integers(len(self.moves)))], {}


def probe(sim_cfg: SimConfig, cfg: ProbeConfig, log=print) -> dict:
    """Run the probe on seeds cfg.seed .. cfg.seed + episodes - 1; returns per-episode results and the summary."""
    if cfg.policy not in POLICIES:
        raise SimError(f"unknown policy {cfg.policy!r}; choose one of {POLICIES}")
    try:
        get_task(cfg.task)
    except TaskError as exc:
        raise SimError(str(exc)) from None
    if cfg.policy == "energy":
        from vjepa2_ros.sim.paths import SHIPPED_MODEL

        policy = EnergyProbePolicy(EnergyScorer(cfg.model or str(SHIPPED_MODEL), cfg.encoder_size), cfg)
    else:
        policy = RandomMovePolicy(cfg.seed) if cfg.policy == "random" else OraclePolicy()
    sim = FetchSim(replace(sim_cfg, task=cfg.task), seed=cfg.seed)
    seeds = list(range(cfg.seed, cfg.seed + cfg.episodes))
    strips = Path(cfg.strips) if cfg.strips else None
    try:
        result = run_episodes(sim, policy, seeds, cfg.steps, strips, first_only=False, log=log)
    finally:
        sim.close()
    return {"config": cfg.__dict__, **result}


def build_parser() -> argparse.ArgumentParser:
    d = ProbeConfig()
    p = argparse.ArgumentParser(prog="vjepa2-scene-probe", description=__doc__.split("\n")[0])
    p.add_argument("--task", default=d.task, choices=task_names(), help="the scene to probe")
    p.add_argument("--seed", type=int, default=d.seed, help="first seed (episodes use seed, seed+1, ...)")
    p.add_argument("--episodes", type=int, default=d.episodes)
    p.add_argument("--steps", type=int, default=d.steps, help="step budget per episode")
    p.add_argument("--policy", default=d.policy, choices=POLICIES)
    add_protocol_arguments(p)
    p.add_argument("--subgoal-threshold", type=float, default=d.subgoal_threshold)
    p.add_argument("--subgoal-steps", type=int, default=None, help="steps on each goal (default: the task's params)")
    p.add_argument("--no-plateau", action="store_true", help="do not move on when holding still is best")
    p.add_argument("--model", default=d.model, help="world model checkpoint (default: the shipped reach model)")
    p.add_argument("--encoder-size", type=int, default=0, help="px the encoder sees (0: the model's own)")
    p.add_argument("--scene", default="{}", help="SimConfig overrides as JSON, e.g. '{\"block_half_size\": 0.04}'")
    p.add_argument("--strips", default="", help="write one film strip per episode into this folder")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.steps < 1 or args.threads < 1 or min(args.subgoal_steps or 0, args.oracle_every) < 0:
        parser.error("--episodes, --steps and --threads must be >= 1, --subgoal-steps and --oracle-every >= 0")
    args.subgoals = default_subgoals(args.task, args.subgoals, args.oracle_every)
    if not 0 <= args.subgoals <= MAX_SUBGOALS:
        parser.error(f"--subgoals must be in 0..{MAX_SUBGOALS}, got {args.subgoals}")
    try:
        scene = json.loads(args.scene)
        sim_cfg = SimConfig(**scene)
    except (json.JSONDecodeError, TypeError) as exc:
        parser.error(f"--scene: {exc}")
    import torch

    torch.set_num_threads(args.threads)
    names = ("task", "seed", "episodes", "steps", "policy", "subgoals", "oracle_every", "subgoal_threshold")
    names += ("subgoal_steps", "model", "encoder_size", "strips")
    cfg = ProbeConfig(plateau=not args.no_plateau, **{name: getattr(args, name) for name in names})
    try:
        result = probe(sim_cfg, cfg, log=lambda m: print(m, file=sys.stderr, flush=True))
    except SimError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    result["scene"] = scene
    print(json.dumps(result if args.json else {"scene": scene, **result["summary"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
