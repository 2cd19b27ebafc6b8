"""`vjepa2-sim-eval --via-ros`: the planner policy's episodes run through the real simulator and planner nodes.

The two nodes are separate processes talking over DDS, started as `make demo` starts them, with the same params
file the in-process evaluation reads (plus its overrides as a second params file). Each episode selects its seed on
the simulator (`seed` parameter + `~/reset`, so episode `seed + i` is the in-process one) and sends the goal image
as a ReachGoal with the episode's step budget and the demonstration protocol's images (`--subgoals K`, served by
the simulator's `~/subgoal_images`); distances come from the simulator's `~/goal_distance`. The loop is the node's;
the record and the summary are the in-process ones (`vjepa2_ros.sim.episodes`), so the success rate is the node's
and compares with the in-process run on the same seeds.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

from vjepa2_ros.sim.demo import DemoClient, DemoError, start_nodes, stop_nodes, write_planner_overrides
from vjepa2_ros.sim.paths import config_file


def evaluate_via_ros(cfg, model: str | Path, out: Path, log=print, timeout_per_step: float = 60.0) -> dict:
    """Run `cfg.episodes` planner episodes over ROS 2; returns {"summary", "episodes"} like `evaluate`."""
    import rclpy

    from vjepa2_ros.sim.episodes import summarise

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 200)))
    logs = out / "ros_logs"
    logs.mkdir(parents=True, exist_ok=True)
    node_values = {**cfg.planner_overrides, "model.precision": cfg.precision}
    params = [config_file(cfg.planner_params), write_planner_overrides(logs / "planner_overrides.yaml", node_values)]
    procs = start_nodes(str(model), cfg.seed, cfg.task, logs, planner_params=params)
    rclpy.init()
    client = None
    episodes, t0 = [], time.perf_counter()
    try:
        client = DemoClient()
        client.spin_until(lambda: client.goal_msg is not None and client.image is not None, 60, "the sim", procs)
        if not client.action.wait_for_server(timeout_sec=120):
            raise DemoError("the planner's reach_goal action did not appear (see ros_logs/planner.log)")
        for i in range(cfg.episodes):
            ep = _episode(client, cfg, cfg.seed + i, procs, timeout_per_step)
            episodes.append(ep)
            log(
                f"[planner_ros] episode {i + 1}/{cfg.episodes}: {ep['start_distance'] * 100:.1f} -> "
                f"{ep['final_distance'] * 100:.1f} cm in {ep['steps']} steps ({ep['plan_s_per_step']:.3f} s/step)"
            )
    finally:
        if client is not None:
            client.close()
        rclpy.try_shutdown()
        stop_nodes(procs)
    summary = summarise("planner_ros", episodes)
    summary["wall_s"] = time.perf_counter() - t0
    return {"summary": summary, "episodes": episodes}


def _episode(client: DemoClient, cfg, seed: int, procs, timeout_per_step: float) -> dict[str, Any]:
    from vjepa2_ros.sim.episodes import EpisodeTrace

    client.new_episode(seed, procs)
    trace = EpisodeTrace(seed, client.fresh_distance(procs))
    last = time.perf_counter()

    def on_feedback(msg) -> None:
        nonlocal last
        fb = msg.feedback
        if not fb.action:
            return
        now = time.perf_counter()
        trace.record(client.distance, list(fb.action), plan_s=now - last, step=int(fb.step))
        last = now

    steps = cfg.steps()
    goal = client.goal_for(cfg.subgoals, steps, procs, oracle_every=cfg.oracle_every)
    last = time.perf_counter()  # the first step's time starts when the goal goes out
    result = client.reach_with_retries(goal, on_feedback, timeout_per_step * steps, procs)
    client.spin_until(lambda: False, 0.5, "", procs, quiet=True)  # the last command is executed at the next tick
    return {**trace.result(int(result.steps), client.fresh_distance(procs)), "planner_message": result.message}
