"""ROS 2 latency of the planner node with the tiny AC model, over real DDS on loopback (two processes).

    .venv/bin/python bench/ros_bench.py [--n 40] [--samples 25 --iterations 2 --horizon 2] [--json out.json]

1. Service round trip: `~/plan_to_goal` called from another process (goal image in the request, 256x256 rgb8);
   median and p95 of the round trip, and the node's own planning time so the ROS overhead is visible.
2. Camera-to-command: a bench robot publishes a fresh camera frame and state right after each command; the time
   from that publish to the next `~/ee_target` (the node waits for a newer observation, so that frame caused it).
   While no command comes (the goal's first plan, a stall of a loaded machine) it keeps publishing every
   `KEEPALIVE` s, so the node's inputs never go stale and the goal runs all its steps.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from vjepa2_ros.latency import NoSamples, summary

REPO = Path(__file__).resolve().parents[1]
NPZ = Path(os.environ.get("VJEPA2_SHARED", REPO.parent / "shared")) / "data" / "franka_example_traj.npz"
PLANNER_LOG = "planner.log"  # the planner's output, in the run's temporary directory; shown when it does not come up
KEEPALIVE = 0.1  # s without an observation after which the bench robot publishes one anyway


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return bool(predicate())


def start_planner(tmp: Path, args: argparse.Namespace) -> subprocess.Popen:
    from vjepa2_core.hub import make_random_checkpoint

    ckpt = make_random_checkpoint(tmp / "vit_ac_tiny.pt", "vit_ac_tiny")
    params = {
        "model": {"checkpoint": str(ckpt), "device": args.device},
        "cem": {
            "horizon": args.horizon,
            "samples": args.samples,
            "iterations": args.iterations,
            "topk": min(10, args.samples),
        },
        "control_rate": 100.0,  # the highest allowed: the loop waits for observations, not for a clock
        "topics": {"camera": "/bench/camera", "ee_pose": "/bench/ee_pose", "gripper": "/bench/gripper"},
        "safety": {
            "stale_timeout": 2.0,
            "plan_deadline": 30.0,
            "workspace_min": [-2.0, -2.0, -2.0],
            "workspace_max": [2.0, 2.0, 2.0],
        },
    }
    path = tmp / "planner.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    exe = Path(sys.executable).parent / "vjepa2_planner"
    with (tmp / PLANNER_LOG).open("w") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [str(exe), "--ros-args", "--params-file", str(path)], stdout=log, stderr=subprocess.STDOUT
        )


def stop_planner(proc: subprocess.Popen, tmp: Path, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if the planner has not exited within `timeout` s (a loaded machine can take seconds);
    a planner that needed the kill is reported with its log, the measurements stand."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        log = (tmp / PLANNER_LOG).read_text()[-2000:]
        print(
            f"ros_bench.py: warning: the planner did not exit within {timeout:g} s of SIGTERM:\n{log}", file=sys.stderr
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ros_bench.py", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="measurements per benchmark")
    parser.add_argument("--samples", type=int, default=25)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--horizon", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None)
    return parser


class BenchRobot:
    """The bench's robot in this process: publishes the Franka frame and state as one observation and timestamps
    every command; once `reactive` is set it answers each command with a fresh observation, and while no command
    comes it publishes one every `KEEPALIVE` s, so the node's inputs never go stale."""

    def __init__(self, node, camera_msg, state: np.ndarray) -> None:
        from geometry_msgs.msg import PoseStamped
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from std_msgs.msg import Float64

        self.node, self.camera_msg, self.state, self._float = node, camera_msg, state, Float64
        self.pub_cam = node.create_publisher(Image, "/bench/camera", qos_profile_sensor_data)
        self.pub_pose = node.create_publisher(PoseStamped, "/bench/ee_pose", qos_profile_sensor_data)
        self.pub_grip = node.create_publisher(Float64, "/bench/gripper", qos_profile_sensor_data)
        self.sent: list[float] = []  # every observation published
        self.reacted: list[float] = []  # the observation published on each command (reactive phase)
        self.commands: list[float] = []
        self.reactive = threading.Event()
        self._lock = threading.Lock()
        node.create_subscription(PoseStamped, "/vjepa2_planner/ee_target", self._on_command, 10)
        node.create_timer(KEEPALIVE / 2, self._keepalive)

    def observe(self) -> float:
        from vjepa2_ros import conversions as conv

        with self._lock:
            stamp = self.node.get_clock().now().to_msg()
            self.pub_pose.publish(conv.state_to_pose_stamped(self.state, "base", stamp))
            self.pub_grip.publish(self._float(data=float(self.state[6])))
            self.camera_msg.header.stamp = stamp
            self.pub_cam.publish(self.camera_msg)
            self.sent.append(time.perf_counter())
            return self.sent[-1]

    def _on_command(self, _msg) -> None:
        self.commands.append(time.perf_counter())
        if self.reactive.is_set():
            self.reacted.append(self.observe())

    def _keepalive(self) -> None:
        if not self.sent or time.perf_counter() - self.sent[-1] >= KEEPALIVE:
            self.observe()


def measure_service(node, goal_msg, n: int, tmp: Path) -> dict[str, dict[str, float]]:
    """`n` `~/plan_to_goal` round trips after a warm-up: round trip, the node's planning time, and their gap."""
    from vjepa2_interfaces.srv import PlanToGoal

    client = node.create_client(PlanToGoal, "/vjepa2_planner/plan_to_goal")
    if not client.wait_for_service(timeout_sec=60.0):
        log = (tmp / PLANNER_LOG).read_text()[-2000:]
        raise RuntimeError(f"planner did not start (no plan_to_goal service within 60 s):\n{log}")
    req = PlanToGoal.Request(goal_image=goal_msg, seed=1)

    def call() -> tuple[float, object]:
        t0 = time.perf_counter()
        future = client.call_async(req)
        if not wait_until(future.done, 60.0):
            raise RuntimeError("plan_to_goal timed out")
        return time.perf_counter() - t0, future.result()

    # warm-up: until the node has camera and state (discovery) and has encoded the goal once
    if not wait_until(lambda: call()[1].success, 30.0):
        raise RuntimeError(f"plan_to_goal keeps failing: {call()[1].message}")
    rtt, plan_s = [], []
    for _ in range(n):
        seconds, resp = call()
        if not resp.success:
            raise RuntimeError(f"plan_to_goal failed: {resp.message}")
        rtt.append(seconds)
        plan_s.append(resp.planning_time)
    return {
        "service_round_trip": summary(rtt, "service round trips"),
        "service_planning_time": summary(plan_s, "planning times"),
        "service_overhead": summary(np.subtract(rtt, plan_s).tolist(), "service overheads"),
    }


def measure_reach(node, robot: BenchRobot, goal_msg, n: int) -> dict:
    """One ReachGoal of `n + 3` steps with the robot reactive: camera-to-command latency of each step after two."""
    from rclpy.action import ActionClient

    from vjepa2_interfaces.action import ReachGoal

    action = ActionClient(node, ReachGoal, "/vjepa2_planner/reach_goal")
    if not action.wait_for_server(timeout_sec=30.0):
        raise RuntimeError("reach_goal action server not available")
    robot.reactive.set()
    handle_future = action.send_goal_async(ReachGoal.Goal(goal_image=goal_msg, max_steps=n + 3))
    if not wait_until(handle_future.done, 30.0) or not handle_future.result().accepted:
        raise RuntimeError("reach_goal was not accepted within 30 s")
    result_future = handle_future.result().get_result_async()
    if not wait_until(result_future.done, 600.0):
        raise RuntimeError("reach_goal did not finish")
    outcome = result_future.result().result
    commands, reacted = robot.commands, robot.reacted
    # latency k: from the observation published on command k to command k+1; skip two warm-up steps
    pairs = [commands[k + 1] - reacted[k] for k in range(min(len(commands) - 1, len(reacted)))][2:]
    why = f"reach_goal sent {len(commands)} commands in {outcome.steps} steps ({outcome.message})"
    return {
        "reach_goal": {"steps": outcome.steps, "message": outcome.message},
        "camera_to_command": summary(pairs, "camera-to-command pairs", why),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

    import rclpy

    from vjepa2_ros import conversions as conv
    from vjepa2_ros.ros_utils import SteadyExecutor

    try:
        import vjepa2_interfaces.action  # noqa: F401  (ReachGoal, PlanToGoal: built by `make interfaces`)
        import vjepa2_interfaces.srv  # noqa: F401
    except ImportError:
        print("vjepa2_interfaces is not built: run `make interfaces` first", file=sys.stderr)
        return 1

    data = np.load(NPZ)
    frames, state = data["observations"][0], data["states"][0, 0].astype(np.float64)
    camera_msg, goal_msg = conv.rgb_to_image(frames[0]), conv.rgb_to_image(frames[1])

    with tempfile.TemporaryDirectory(prefix="ros_bench_") as tmp:
        proc = start_planner(Path(tmp), args)
        rclpy.init()
        node = rclpy.create_node("ros_bench")
        robot = BenchRobot(node, camera_msg, state)
        executor = SteadyExecutor(num_threads=2)
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        results: dict = {"config": vars(args) | {"json": str(args.json)}}
        try:
            results.update(measure_service(node, goal_msg, args.n, Path(tmp)))
            results.update(measure_reach(node, robot, goal_msg, args.n))
        except NoSamples as exc:
            print(f"ros_bench.py: error: {exc}", file=sys.stderr)
            return 1
        finally:
            executor.shutdown(timeout_sec=2.0)
            node.destroy_node()
            rclpy.try_shutdown()
            stop_planner(proc, Path(tmp))

    for name in ("service_round_trip", "service_planning_time", "service_overhead", "camera_to_command"):
        r = results[name]
        print(f"{name:22s} n={r['n']:3d}  median {r['median_ms']:8.2f} ms  p95 {r['p95_ms']:8.2f} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
