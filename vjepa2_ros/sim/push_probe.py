"""`python -m vjepa2_ros.sim.push_probe`: is a push scene solvable from goal images? The true-simulator probe.

Before a push model is trained, the scene itself must let a goal image say where the block has to go. The probe
puts the TRUE simulator where the predictor would be: each step it tries a fixed set of 37 candidate moves (state
restored after each), renders every outcome, scores it by the L1 energy of a world model's encoder features
(the shipped reach model's random frozen encoder by default) to the current goal image, and executes the best.
With `--subgoals` the goal images are the sequence of `FetchSim.subgoal_images()` (above the pre-push pose,
lowered there, the goal), and the probe moves on to the next image by the controller's rules: when holding
still beats every move (a plateau), when the energy falls below `--subgoal-threshold`, or after
`--subgoal-steps` steps. `--policy random` and `--policy oracle` (the scripted pusher) are the baselines.
Success = block within 5 cm of its goal (Fetch's threshold) after `--steps` steps; 3 cm is reported too.
`--task pick_and_place`: the same probe on the pick-and-place scene, with gripper open / close among the
candidates; its sub-goals are the approach, grasp and goal images (or the scripted picker's rollout), and the
oracle is the scripted picker.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vjepa2_ros.sim.env import FetchSim, SimConfig, SimError, scripted_pick_action, scripted_push_action

POLICIES = ("energy", "random", "oracle")
TASKS = ("push", "pick_and_place")


@dataclass
class ProbeConfig:
    """One probe run: seeds, step budget, policy and sub-goal rules."""

    task: str = "push"
    seed: int = 500
    episodes: int = 10
    steps: int = 40
    policy: str = "energy"
    subgoals: bool = False
    subgoal_every: int = 0  # sub-goals from the scripted pusher's rollout, one image every this many steps (0 = poses)
    subgoal_threshold: float = 0.0  # move on when the energy to the current sub-goal is at most this (0 = off)
    subgoal_steps: int = 0  # move on after this many steps on one sub-goal (0 = off)
    plateau: bool = True  # move on when holding still beats every candidate move
    model: str = ""  # world model checkpoint (empty = the shipped reach model)
    strips: str = ""  # folder for one film strip per episode (empty = none)


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

    def __init__(self, model_path: str):
        from vjepa2_core.planning import WorldModel
        from vjepa2_core.planning.energies import l1_energy

        self.wm = WorldModel.from_checkpoint(model_path)
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


def run_episode(sim: FetchSim, cfg: ProbeConfig, scorer: EnergyScorer | None, seed: int) -> dict:
    """One push episode from `sim.reset(seed)` under the probe's policy; returns distances, sub-goal switches
    and timing."""
    sim.reset(seed=seed)
    rng = np.random.default_rng(seed)
    pick = sim.cfg.task == "pick_and_place"
    moves = candidate_moves(sim.cfg.max_step, planar=bool(sim.high[2] - sim.low[2] < 1e-9), gripper=pick)
    goals = (
        (sim.subgoal_images(cfg.subgoal_every) if cfg.subgoals else [sim.goal_image()])
        if cfg.policy == "energy"
        else []
    )
    start_block, start_dist = sim.block_position(), sim.distance_to_goal()
    k, on_goal, switches, best_dist, t0 = 0, 0, [], start_dist, time.perf_counter()
    split = energy_split(sim, scorer, goals[-1]) if scorer is not None and goals else None
    frames, labels = [sim.render()], ["start"]
    for t in range(cfg.steps):
        if cfg.policy == "oracle":
            action = scripted_pick_action(sim) if pick else scripted_push_action(sim)
        elif cfg.policy == "random":
            action = moves[int(rng.integers(len(moves)))]
        else:
            images = outcome_images(sim, moves)
            energy = scorer.energies(images, goals[k])
            final = k == len(goals) - 1
            by_rule = (cfg.subgoal_threshold > 0 and energy[0] <= cfg.subgoal_threshold) or (
                cfg.subgoal_steps > 0 and on_goal >= cfg.subgoal_steps
            )
            plateau = cfg.plateau and int(np.argmin(energy)) == 0
            if not final and (by_rule or plateau):
                k, on_goal = k + 1, 0
                switches.append(t)
                energy = scorer.energies(images, goals[k])
            action = moves[int(np.argmin(energy))]
        sim.step(action)
        on_goal += 1
        best_dist = min(best_dist, sim.distance_to_goal())
        frames.append(sim.render())
        labels.append(f"t={t + 1} g{k} {100 * sim.distance_to_goal():.0f}cm")
    if cfg.strips:
        from vjepa2_ros.sim.filmstrip import save_film_strip

        strip = Path(cfg.strips) / f"{sim.cfg.task}_{cfg.policy}_{seed}.png"
        save_film_strip(strip, frames, sim.goal_image(), labels=labels)
    return {
        "start_distance": round(start_dist, 4),
        "final_distance": round(sim.distance_to_goal(), 4),
        "best_distance": round(best_dist, 4),
        "block_moved": round(float(np.linalg.norm(sim.block_position()[:2] - start_block[:2])), 4),
        "subgoal_switches": switches,
        "energy_split": split,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def summarize(episodes: list[dict]) -> dict:
    final = np.array([e["final_distance"] for e in episodes])
    return {
        "episodes": len(episodes),
        "success_rate_5cm": round(float((final < 0.05).mean()), 3),
        "success_rate_3cm": round(float((final < 0.03).mean()), 3),
        "mean_final_distance": round(float(final.mean()), 4),
        "mean_start_distance": round(float(np.mean([e["start_distance"] for e in episodes])), 4),
        "block_moved_2cm": round(float(np.mean([e["block_moved"] > 0.02 for e in episodes])), 3),
        "seconds_per_episode": round(float(np.mean([e["seconds"] for e in episodes])), 1),
    }


def probe(sim_cfg: SimConfig, cfg: ProbeConfig, log=print) -> dict:
    """Run the probe on seeds cfg.seed .. cfg.seed + episodes - 1; returns per-episode results and a summary."""
    if cfg.policy not in POLICIES:
        raise SimError(f"unknown policy {cfg.policy!r}; choose one of {POLICIES}")
    if cfg.task not in TASKS:
        raise SimError(f"unknown probe task {cfg.task!r}; choose one of {TASKS}")
    scorer = None
    if cfg.policy == "energy":
        from vjepa2_ros.sim.paths import SHIPPED_MODEL

        scorer = EnergyScorer(cfg.model or str(SHIPPED_MODEL))
    sim = FetchSim(replace(sim_cfg, task=cfg.task), seed=cfg.seed)
    episodes = []
    try:
        for i in range(cfg.episodes):
            ep = run_episode(sim, cfg, scorer, cfg.seed + i)
            episodes.append({"seed": cfg.seed + i, **ep})
            moved, switches = ep["block_moved"], ep["subgoal_switches"]
            log(f"[{cfg.task}-probe] seed {cfg.seed + i}: {ep['start_distance']:.3f} -> {ep['final_distance']:.3f} m "
                f"(block moved {moved:.3f}, sub-goal switches {switches}, {ep['seconds']} s)")  # fmt: skip
    finally:
        sim.close()
    return {"config": cfg.__dict__, "summary": summarize(episodes), "episodes": episodes}


def build_parser() -> argparse.ArgumentParser:
    d = ProbeConfig()
    p = argparse.ArgumentParser(prog="vjepa2-push-probe", description=__doc__.split("\n")[0])
    p.add_argument("--task", default=d.task, choices=TASKS, help="the scene to probe")
    p.add_argument("--seed", type=int, default=d.seed, help="first seed (episodes use seed, seed+1, ...)")
    p.add_argument("--episodes", type=int, default=d.episodes)
    p.add_argument("--steps", type=int, default=d.steps, help="step budget per episode")
    p.add_argument("--policy", default=d.policy, choices=POLICIES)
    p.add_argument("--subgoals", action="store_true", help="score against the sub-goal image sequence")
    p.add_argument(
        "--subgoal-every",
        type=int,
        default=d.subgoal_every,
        help="sub-goals from the scripted pusher's rollout: one frame every N steps (0: three poses)",
    )
    p.add_argument("--subgoal-threshold", type=float, default=d.subgoal_threshold)
    p.add_argument("--subgoal-steps", type=int, default=d.subgoal_steps)
    p.add_argument("--no-plateau", action="store_true", help="do not move on when holding still is best")
    p.add_argument("--model", default=d.model, help="world model checkpoint (default: the shipped reach model)")
    p.add_argument("--scene", default="{}", help="SimConfig overrides as JSON, e.g. '{\"block_half_size\": 0.04}'")
    p.add_argument("--strips", default="", help="write one film strip per episode into this folder")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.steps < 1 or args.threads < 1 or min(args.subgoal_steps, args.subgoal_every) < 0:
        parser.error("--episodes, --steps and --threads must be >= 1, --subgoal-steps and --subgoal-every >= 0")
    try:
        scene = json.loads(args.scene)
        sim_cfg = SimConfig(**scene)
    except (json.JSONDecodeError, TypeError) as exc:
        parser.error(f"--scene: {exc}")
    import torch

    torch.set_num_threads(args.threads)
    names = ("task", "seed", "episodes", "steps", "policy", "subgoals", "subgoal_every", "subgoal_threshold")
    names += ("subgoal_steps", "model", "strips")
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
