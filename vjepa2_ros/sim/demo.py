"""The one-command demo: the simulated arm reaches a goal image through the real ROS 2 planner node.

Starts `vjepa2_sim` and `vjepa2_planner` as separate processes over DDS, waits for the camera and the goal image,
sends a `ReachGoal` goal (the sim's goal image), prints each step, and ends with the final distance and a saved
image strip (start | steps | goal). `launch/demo.launch.py` starts the same two nodes on a full ROS 2 install;
`--no-spawn` then runs only this client. `--task push` (`make demo TASK=push`): the arm pushes the block to where
the goal image shows it, with the shipped push model and params, and the demonstration protocol's images sent in
the same ReachGoal (`--subgoals K`: K frames of the simulator's scripted demonstration, `~/subgoal_images`, then
the goal image); the task's settings are read from `vjepa2_ros.sim.tasks`; success = the task's threshold.

    .venv/bin/python -m vjepa2_ros.sim.demo [--task push] [--model CKPT] [--seed 3] [--max-steps N] [--out sim_demo]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vjepa2_core.planning.plausibility import POSE_JUMP
from vjepa2_ros.sim.episodes import MAX_SUBGOALS, add_protocol_arguments, default_subgoals, protocol_overrides
from vjepa2_ros.sim.filmstrip import save_film_strip
from vjepa2_ros.sim.paths import ConfigFileError, config_file
from vjepa2_ros.sim.tasks import get_task, task_names

SIM = "/vjepa2_sim"
PLANNER = "/vjepa2_planner"
STARTUP_RETRIES = 10  # goals refused at step 0 because the planner has no camera/pose yet
# pose_jump: a reset moves the arm at once, and the planner blocks commands until three poses agree (plausibility)
NOT_YET_SEEN = ("no_camera", "no_state", POSE_JUMP)


class DemoError(RuntimeError):
    """A step of the demo that did not happen in time (with what to look at)."""


def start_nodes(
    model: str, seed: int, task: str, logs: Path, planner_params: list[Path] | None = None
) -> list[subprocess.Popen]:
    """The simulator and the planner, each its own process, output to logs/<name>.log.

    The planner reads config/sim_planner.yaml, or `planner_params` (later files override earlier ones).
    """
    py = sys.executable
    sim = [py, "-m", "vjepa2_ros.sim.sim_node", "--ros-args", "--params-file", str(config_file("sim.yaml"))]
    sim += ["-p", f"seed:={seed}", "-p", f"task:={task}"]
    planner = [py, "-m", "vjepa2_ros.planner_node", "--ros-args"]
    for params in planner_params or [config_file("sim_planner.yaml")]:
        planner += ["--params-file", str(params)]
    planner += ["-p", f"model.checkpoint:={model}"]
    procs = []
    for name, cmd in (("sim", sim), ("planner", planner)):
        log = open(logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy()))
        print(f"[demo] started {name} (pid {procs[-1].pid}), log {logs / f'{name}.log'}", file=sys.stderr)
    return procs


def write_planner_overrides(path: Path, flat: dict[str, Any]) -> Path:
    """A planner params file with `flat` settings ({'cem.samples': 50} -> cem: {samples: 50}), given after the
    task's params file so that its values win."""
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        *sections, leaf = name.split(".")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": tree}}))
    return path


def stop_nodes(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class DemoClient:
    """Subscribes to the sim's camera, goal image and distance; sends the ReachGoal goal to the planner."""

    def __init__(self) -> None:
        import rclpy
        from sensor_msgs.msg import Image
        from std_msgs.msg import Float64

        from vjepa2_interfaces.action import ReachGoal
        from vjepa2_ros.conversions import image_to_rgb
        from vjepa2_ros.goal_client import GoalClient
        from vjepa2_ros.sim.sim_node import LATCHED

        self.rclpy, self.ReachGoal, self.to_rgb = rclpy, ReachGoal, image_to_rgb
        self.node = rclpy.create_node("vjepa2_sim_demo")
        self.image: np.ndarray | None = None
        self.goal_msg = None
        self.distance: float | None = None
        self.feedback: list = []
        self.node.create_subscription(Image, f"{SIM}/image", self._on_image, 10)
        self.node.create_subscription(Image, f"{SIM}/goal_image", self._on_goal, LATCHED)
        self.node.create_subscription(Float64, f"{SIM}/goal_distance", self._on_distance, 10)
        self.goals = GoalClient(self.node, PLANNER)  # the goal-sending code of `vjepa2-goal send`
        self.action = self.goals.action

    def _on_image(self, msg) -> None:
        self.image = self.to_rgb(msg)

    def _on_goal(self, msg) -> None:
        self.goal_msg = msg

    def _on_distance(self, msg) -> None:
        self.distance = float(msg.data)

    def spin_until(self, predicate, timeout: float, what: str, procs: list[subprocess.Popen], quiet=False) -> None:
        """Spin until `predicate()` holds; a timeout is an error unless `quiet` (then it is a plain wait)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.rclpy.spin_once(self.node, timeout_sec=0.05)
            if predicate():
                return
            for p in procs:
                if p.poll() is not None:
                    raise DemoError(f"a node exited (code {p.returncode}) while waiting for {what}; see its log")
        if not quiet:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")

    def reach(self, goal, on_feedback, timeout: float, procs: list[subprocess.Popen]):
        """Send one ReachGoal and wait for its result (spinning here, so a node that exits is noticed)."""
        from vjepa2_ros.goal_client import GoalError

        self.goals.wait = lambda predicate, limit, what: self.spin_until(predicate, limit, what, procs)
        try:
            return self.goals.reach(goal, on_feedback, timeout).result
        except GoalError as exc:
            raise DemoError(str(exc)) from None

    def new_episode(self, seed: int, procs: list[subprocess.Popen], timeout: float = 30.0) -> None:
        """Make the simulator start episode `seed` (its `seed` parameter, then ~/reset) and wait for its goal."""
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters
        from std_srvs.srv import Trigger

        value = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=int(seed))
        for srv_type, name, request in (
            (
                SetParameters,
                f"{SIM}/set_parameters",
                SetParameters.Request(parameters=[Parameter(name="seed", value=value)]),
            ),
            (Trigger, f"{SIM}/reset", Trigger.Request()),
        ):
            if srv_type is Trigger:
                self.goal_msg = self.distance = None  # the new goal is published while the reset is answered
            client = self.node.create_client(srv_type, name)
            try:
                if not client.wait_for_service(timeout_sec=timeout):
                    raise DemoError(f"service {name} did not appear")
                future = client.call_async(request)
                self.spin_until(future.done, timeout, f"{name} to answer", procs)
            finally:
                self.node.destroy_client(client)
        self.spin_until(
            lambda: self.goal_msg is not None and self.distance is not None, timeout, "the new goal", procs
        )

    def fresh_distance(self, procs, timeout: float = 10.0) -> float:
        self.distance = None
        self.spin_until(lambda: self.distance is not None, timeout, "the goal distance", procs)
        return self.distance

    def reach_with_retries(self, goal, on_feedback, timeout: float, procs: list[subprocess.Popen]):
        """`reach`, resent while the planner refuses it at step 0 because it has not seen camera/pose yet."""
        for attempt in range(STARTUP_RETRIES + 1):
            result = self.reach(goal, on_feedback, timeout, procs)
            if result.steps or not any(r in result.message for r in NOT_YET_SEEN) or attempt == STARTUP_RETRIES:
                return result
            # DDS discovery: the planner's action server can appear before its sensor subscriptions are matched
            print(f"[demo] the planner has not seen the camera/pose yet ({result.message}); retrying in 1 s")
            self.spin_until(lambda: False, 1.0, "", procs, quiet=True)
        return result

    def subgoal_images(
        self, every: int, procs: list[subprocess.Popen], timeout: float = 60.0, frames: int = 0
    ) -> list:
        """The simulator demonstrator's way to the current goal (Image messages, the last is the goal image): K =
        `frames` demonstration frames, or (diagnostic) a frame every `every` steps."""
        from vjepa2_interfaces.srv import SubgoalImages

        client = self.node.create_client(SubgoalImages, f"{SIM}/subgoal_images")
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise DemoError(f"service {SIM}/subgoal_images did not appear")
            future = client.call_async(SubgoalImages.Request(every=int(every), frames=int(frames)))
            self.spin_until(future.done, timeout, f"{SIM}/subgoal_images to answer", procs)
        finally:
            self.node.destroy_client(client)
        response = future.result()
        if not response.success or not response.images:
            raise DemoError(f"the simulator gave no sub-goal images: {response.message}")
        return list(response.images)

    def goal_for(self, subgoals: int, max_steps: int, procs: list[subprocess.Popen], oracle_every: int = 0):
        """The episode's ReachGoal: the goal image after K = `subgoals` demonstration frames (the protocol), or
        (diagnostic) after the demonstrator's frame every `oracle_every` steps."""
        goal = self.ReachGoal.Goal(goal_image=self.goal_msg, max_steps=max_steps)
        if subgoals > 0 or oracle_every > 0:
            *goal.subgoal_images, goal.goal_image = self.subgoal_images(oracle_every, procs, frames=subgoals)
        return goal

    def fresh_image(self, procs, timeout: float = 10.0) -> np.ndarray:
        self.image = None
        self.spin_until(lambda: self.image is not None, timeout, "a camera image", procs)
        return self.image

    def close(self) -> None:
        self.goals.close()
        self.node.destroy_node()


def run(args: argparse.Namespace) -> dict:
    import rclpy

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = get_task(args.task)
    model = args.model or str(task.model)
    extra = protocol_overrides(args.oracle_every)  # the oracle diagnostic's own switching rule, after the task's
    params = [task.params] + ([write_planner_overrides(out / "planner_overrides.yaml", extra)] if extra else [])
    procs = [] if args.no_spawn else start_nodes(model, args.seed, task.name, out, params)
    success_m = task.success_m
    rclpy.init()
    client = None
    try:
        client = DemoClient()
        client.spin_until(lambda: client.goal_msg is not None and client.image is not None, 60, "the sim", procs)
        print("[demo] simulator is up; waiting for the planner to load its model ...")
        if not client.action.wait_for_server(timeout_sec=args.startup_timeout):
            raise DemoError(f"the planner's {PLANNER}/reach_goal action did not appear (see planner.log)")
        client.spin_until(lambda: client.distance is not None, 10, "the goal distance", procs)
        start_distance = client.distance
        frames, labels = [client.fresh_image(procs)], [f"start {start_distance * 100:.1f}cm"]
        goal_image = client.to_rgb(client.goal_msg)
        print(f"[demo] start: {start_distance * 100:.1f} cm from the goal; sending the goal image")

        def on_feedback(fb_msg) -> None:
            fb = fb_msg.feedback
            d = client.distance if client.distance is not None else float("nan")
            stage = f"  goal {fb.subgoal + 1}/{n_goals}" if n_goals > 1 else ""
            if not fb.action:  # the planner stopped (safety stop, goal reached): no command at this step
                print(
                    f"[demo] no command after step {fb.step}{stage}: {fb.status or 'stopped'}  energy {fb.energy:.4f}"
                )
                return
            frames.append(client.image)
            labels.append(f"t={fb.step} {d * 100:.1f}cm")
            act = " ".join(f"{a:+.3f}" for a in list(fb.action)[:3])
            print(f"[demo] step {fb.step:3d}{stage}  energy {fb.energy:.4f}  dxyz {act}  distance {d * 100:.1f} cm")

        subgoals = default_subgoals(task.name, args.subgoals, args.oracle_every)
        goal = client.goal_for(subgoals, args.max_steps, procs, oracle_every=args.oracle_every)
        if goal.subgoal_images:
            print(f"[demo] {len(goal.subgoal_images)} sub-goal images from the simulator oracle, then the goal")
        n_goals = len(goal.subgoal_images) + 1
        goal.energy_threshold = float(args.energy_threshold)
        result = client.reach_with_retries(goal, on_feedback, args.timeout, procs)
        frames.append(client.fresh_image(procs))
        client.spin_until(lambda: client.distance is not None, 5, "the final distance", procs)
        final = client.distance
        labels.append(f"final {final * 100:.1f}cm")
        strip = save_film_strip(out / "demo_strip.png", frames, goal_image, labels=labels)
        summary = {
            "planner_success": bool(result.success),
            "planner_message": result.message,
            "steps": int(result.steps),
            "final_energy": float(result.final_energy),
            "start_distance_m": start_distance,
            "final_distance_m": final,
            "task": args.task,
            "success_m": success_m,
            "reached": final < success_m,
            "strip": str(strip),
        }
        print(f"[demo] planner: {result.message} after {result.steps} steps (energy {result.final_energy:.4f})")
        verdict = "reached" if final < success_m else "did not reach"
        what = task.what
        print(
            f"[demo] final distance ({what}) {final * 100:.1f} cm (start {start_distance * 100:.1f} cm); "
            f"{verdict} the {success_m * 100:.0f} cm goal; image strip: {strip}"
        )
        return summary
    finally:
        if client is not None:
            client.close()
        rclpy.try_shutdown()
        stop_nodes(procs)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vjepa2-sim-demo", description=__doc__.split("\n")[0])
    p.add_argument("--task", default="reach", choices=task_names())
    p.add_argument("--model", default=None, help="AC checkpoint for the planner (default: the task's shipped model)")
    p.add_argument("--seed", type=int, default=3, help="start and goal of the episode")
    p.add_argument("--max-steps", type=int, default=0, help="0: the task params file's max_steps")
    add_protocol_arguments(p)
    p.add_argument("--energy-threshold", type=float, default=0.0, help="planner stops at this energy (0: never)")
    p.add_argument("--out", default="sim_demo", help="directory for the image strip and the node logs")
    p.add_argument("--timeout", type=float, default=480.0, help="seconds for the whole reach")
    p.add_argument("--startup-timeout", type=float, default=120.0, help="seconds for the planner to come up")
    p.add_argument("--no-spawn", action="store_true", help="nodes are already running (launch/demo.launch.py)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    model = args.model or str(get_task(args.task).model)
    if not args.no_spawn and not Path(model).is_file():
        parser.error(f"model {model} not found (train it, or pass --model PATH)")
    if args.max_steps < 0 or args.oracle_every < 0 or not 0 <= (args.subgoals or 0) <= MAX_SUBGOALS:
        parser.error(f"--max-steps and --oracle-every must be >= 0, --subgoals in 0..{MAX_SUBGOALS}")
    # keep the demo on this machine unless the user chose otherwise; a random domain avoids crosstalk
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if not args.no_spawn:
        os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 200)))
    try:
        run(args)
    except (DemoError, ConfigFileError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
