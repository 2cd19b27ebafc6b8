"""One episode record, one episode loop and one summary for every simulator run.

`vjepa2-sim-eval` (its planner, random and scripted policies in-process), the true-simulator scene probe
(`vjepa2_ros.sim.scene_probe`) and the via-ROS runs (`vjepa2_ros.sim.via_ros`, whose loop is the planner node's;
it fills the same `EpisodeTrace` from the action feedback) all report the same keys with the same thresholds:
success within 3 cm and within 5 cm of the goal (`SUCCESS_3CM`, `SUCCESS_5CM`; block for push and pick-and-place,
grip for reach). A policy is an object with `name`, `reset(sim)` and `act(sim, image, state) -> (action, info)`;
`info["stop"]` ends the episode, an optional `episode_info()` adds to its record.

Demonstration protocol: `goal_images(sim, subgoals, oracle_every)` is what every tool hands the planner: the goal
image plus K frames of one scripted demonstration (`FetchSim.demonstration_images`), or, as a diagnostic only, the
demonstrator's frame every N steps (`oracle_every`, the old dense mode).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from vjepa2_ros.sim.env import FetchSim, SimError
from vjepa2_ros.sim.filmstrip import save_film_strip
from vjepa2_ros.sim.tasks import SUCCESS_3CM, SUCCESS_5CM, get_task

MAX_SUBGOALS = 2  # the protocol: at most two demonstration frames besides the goal image (K = 0, 1, 2)
# the diagnostic's switching rule: dense oracle frames (one a step) are left after 2 steps on each, the value its
# measured rates were taken with; the task's params file carries the protocol's own rule (push: the plateau alone)
ORACLE_SUBGOAL_STEPS = 2


def goal_images(sim: FetchSim, subgoals: int = 0, oracle_every: int = 0) -> list[np.ndarray]:
    """The planner's goal images for the current episode: K = `subgoals` demonstration frames then the goal image,
    or with `oracle_every` N > 0 (diagnostic) the scripted demonstrator's frame every N steps then the goal."""
    if oracle_every < 0 or not 0 <= subgoals <= MAX_SUBGOALS:
        raise SimError(f"need 0 <= subgoals <= {MAX_SUBGOALS} and oracle_every >= 0, got {subgoals}, {oracle_every}")
    if oracle_every > 0:
        if subgoals:
            raise SimError("--oracle-every (diagnostic) replaces the demonstration frames: pass --subgoals 0")
        return sim.subgoal_images(every=oracle_every)
    return sim.demonstration_images(subgoals)


def protocol_overrides(oracle_every: int) -> dict[str, int]:
    """Planner settings that the goal images' mode sets on top of the task's params file: the diagnostic dense
    oracle frames (`oracle_every` > 0) switch after `ORACLE_SUBGOAL_STEPS` steps; the protocol adds nothing."""
    return {"subgoal_steps": ORACLE_SUBGOAL_STEPS} if oracle_every > 0 else {}


def add_protocol_arguments(parser) -> None:
    """The demonstration protocol's flags in every tool: `--subgoals K` and the diagnostic `--oracle-every N`."""
    parser.add_argument(
        "--subgoals", type=int, default=None, help=f"K demonstration frames (0..{MAX_SUBGOALS}; default: the task's)"
    )
    parser.add_argument(
        "--oracle-every", type=int, default=0, help="diagnostic: the demonstrator's frame every N steps"
    )


def default_subgoals(task: str, subgoals: int | None, oracle_every: int = 0) -> int:
    """K as a tool's flags give it: the task's default when not given, 0 under the diagnostic `oracle_every`."""
    if subgoals is not None:
        return subgoals
    return 0 if oracle_every > 0 else get_task(task).subgoals


class EpisodeTrace:
    """The record of one episode as it runs: distances to the goal, moves, planning time."""

    def __init__(self, seed: int, start_distance: float, block_start: np.ndarray | None = None):
        self.seed, self.distances, self.block_start = seed, [float(start_distance)], block_start
        self.moving_steps, self.first_success_step, self.plan_s = 0, None, []

    def record(self, distance: float | None, action, plan_s: float | None = None, step: int | None = None) -> None:
        """One executed step (`step`, default: the count of distances so far): the distance after it (None = not
        known), the action sent, its planning time."""
        self.moving_steps += int(np.linalg.norm(np.asarray(action, dtype=np.float64)[:3]) > 1e-6)
        if plan_s is not None:
            self.plan_s.append(plan_s)
        if distance is None:
            return
        self.distances.append(float(distance))
        if self.first_success_step is None and distance < SUCCESS_3CM:
            self.first_success_step = len(self.distances) - 1 if step is None else step

    def result(self, steps: int, final_distance: float | None = None, block_end: np.ndarray | None = None) -> dict:
        final = self.distances[-1] if final_distance is None else float(final_distance)
        out = {
            "seed": self.seed,
            "start_distance": self.distances[0],
            "final_distance": final,
            "min_distance": min(self.distances + [final]),
            "success": final < SUCCESS_3CM,
            "near": final < SUCCESS_5CM,
            "steps": steps,
            "moving_steps": self.moving_steps,
            "first_success_step": self.first_success_step,
            "plan_s_per_step": float(np.mean(self.plan_s)) if self.plan_s else 0.0,
        }
        if self.block_start is not None and block_end is not None:
            out["block_moved"] = float(np.linalg.norm(block_end[:2] - self.block_start[:2]))
        return out


def run_episode(sim: FetchSim, policy, seed: int, max_steps: int, keep_frames: bool = False) -> dict:
    """One closed-loop episode from the seeded random start `sim.reset(seed)`; returns its record."""
    state = sim.reset(seed=seed)
    block = sim.block_position if sim.block_half is not None else (lambda: None)
    trace = EpisodeTrace(seed, sim.distance_to_goal(), block())
    policy.reset(sim)
    frames, labels = [sim.render()], ["start"]
    for t in range(max_steps):
        t0 = time.perf_counter()
        action, info = policy.act(sim, frames[-1], state)
        plan_s = time.perf_counter() - t0
        if info.get("stop"):
            trace.plan_s.append(plan_s)
            break
        state = sim.step(action)
        frames.append(sim.render())
        trace.record(sim.distance_to_goal(), action, plan_s)
        labels.append(f"t={t + 1} g{info.get('subgoal', 0)} {trace.distances[-1] * 100:.1f}cm")
    result = trace.result(len(trace.distances) - 1, block_end=block())
    result.update(getattr(policy, "episode_info", dict)())
    if keep_frames:
        result["frames"], result["goal_image"], result["labels"] = frames, sim.goal_image(), labels
    return result


def summarise(name: str, episodes: list[dict]) -> dict:
    """The one summary (in-process, scene probe, via ROS): rates within 3 and 5 cm, distances, steps, time."""
    final = np.array([e["final_distance"] for e in episodes])
    reached = [e["first_success_step"] for e in episodes if e["first_success_step"] is not None]
    summary = {
        "policy": name,
        "episodes": len(episodes),
        "success_rate_3cm": float(np.mean([e["success"] for e in episodes])),
        "success_rate_5cm": float(np.mean([e["near"] for e in episodes])),
        "ever_within_3cm": float(np.mean([e["min_distance"] < SUCCESS_3CM for e in episodes])),
        "mean_final_distance_m": float(final.mean()),
        "median_final_distance_m": float(np.median(final)),
        "mean_start_distance_m": float(np.mean([e["start_distance"] for e in episodes])),
        "mean_steps": float(np.mean([e["steps"] for e in episodes])),
        "mean_moving_steps": float(np.mean([e["moving_steps"] for e in episodes])),
        "mean_steps_to_3cm": float(np.mean(reached)) if reached else None,
        "plan_s_per_step": float(np.mean([e["plan_s_per_step"] for e in episodes])),
    }
    if all("block_moved" in e for e in episodes):
        summary["block_moved_2cm"] = float(np.mean([e["block_moved"] > 0.02 for e in episodes]))
    return summary


def run_episodes(
    sim: FetchSim, policy, seeds: list[int], max_steps: int, strips: Path | None = None, first_only=True, log=print
) -> dict:
    """Episodes of one policy on `seeds`; film strips into `strips` (a file: the first episode's; a folder with
    `first_only=False`: one per episode). Returns {"summary", "episodes"}."""
    episodes, t0 = [], time.perf_counter()
    for i, seed in enumerate(seeds):
        keep = strips is not None and (i == 0 or not first_only)
        ep = run_episode(sim, policy, seed, max_steps, keep_frames=keep)
        if "frames" in ep:
            path = strips if first_only else strips / f"{sim.cfg.task}_{policy.name}_{seed}.png"
            save_film_strip(path, ep.pop("frames"), ep.pop("goal_image"), labels=ep.pop("labels"))
        episodes.append(ep)
        log(
            f"[{policy.name}] episode {i + 1}/{len(seeds)} (seed {seed}): {ep['start_distance'] * 100:.1f} -> "
            f"{ep['final_distance'] * 100:.1f} cm in {ep['steps']} steps ({ep['plan_s_per_step']:.3f} s/step)"
        )
    summary = summarise(policy.name, episodes)
    summary["wall_s"] = time.perf_counter() - t0
    if strips is not None:
        summary["film_strip"] = str(strips)
    return {"summary": summary, "episodes": episodes}


class RandomPolicy:
    """Uniform random deltas up to the step limit (the lower baseline); the gripper too where it is planned."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def reset(self, sim: FetchSim) -> None:
        pass

    def act(self, sim: FetchSim, image: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, dict]:
        action = np.zeros(7)
        action[:3] = self.rng.uniform(-sim.cfg.max_step, sim.cfg.max_step, 3)
        if sim.task.gripper_in_action:
            action[6] = self.rng.uniform(-1.0, 1.0)
        return action, {}


class OraclePolicy:
    """The task's scripted demonstrator on true positions (the upper baseline for the step budget)."""

    name = "oracle"

    def reset(self, sim: FetchSim) -> None:
        pass

    def act(self, sim: FetchSim, image: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, dict]:
        return sim.task.demonstrator(sim), {}
