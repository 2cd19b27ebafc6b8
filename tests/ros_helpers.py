"""Helpers for multi-process ROS 2 tests: a test robot process, node processes with clean shutdown, a client node.

Run as a script, this file is the test robot: it publishes real camera frames from the Franka example trajectory,
its end-effector pose and gripper closedness, and integrates the `ee_target` / `gripper_command` it receives.
The camera shows the trajectory frame whose state is nearest to the current pose. `~/set_camera` (SetBool)
pauses the camera so tests can make it stale.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def ensure_interfaces() -> None:
    """Build vjepa2_interfaces into the venv when its Python package is missing (as `make interfaces` does)."""
    try:
        import vjepa2_interfaces.srv  # noqa: F401
    except ImportError:
        env = {**os.environ, "VENV": str(BIN.parent)}
        subprocess.run(["bash", str(REPO / "scripts/build_interfaces.sh")], cwd=REPO, env=env, check=True)


class NodeProcess:
    """A node started as its own process; its merged output is collected so tests can wait for lines in it."""

    def __init__(self, cmd: list[str], ready: str | None = None, timeout: float = 60.0) -> None:
        # One torch thread per node: OpenMP threads spinning on 2 cores shared by 3 processes made tiny plans
        # take seconds (deadline misses, stale inputs).
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "RCUTILS_LOGGING_BUFFERED_STREAM": "0", "OMP_NUM_THREADS": "1"}
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if ready is not None and not self.wait_for_line(ready, timeout):
            out = self.output()
            self.stop()
            raise RuntimeError(f"{cmd[0]} did not print {ready!r} within {timeout} s:\n{out[-4000:]}")

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout: float) -> bool:
        return wait_until(
            lambda: any(text in line for line in self.lines) or self.proc.poll() is not None, timeout
        ) and any(text in line for line in self.lines)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> tuple[int, float]:
        """SIGTERM, wait up to `timeout`, then SIGKILL; returns (exit code, seconds it took to exit after SIGTERM)."""
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)
        return self.proc.returncode, time.monotonic() - start


def start_test_robot(npz: Path, *extra: str) -> NodeProcess:
    """The test robot (this file's `robot_main`) replaying `npz`, once it says it is ready."""
    ensure_interfaces()
    return NodeProcess(
        [sys.executable, str(REPO / "tests/ros_helpers.py"), "--npz", str(npz), *extra], ready="test_robot ready"
    )


def start_planner(params: Path, ready: str = "vjepa2_planner ready") -> NodeProcess:
    """The installed planner node with a params file, once its log shows `ready`."""
    return NodeProcess([str(BIN / "vjepa2_planner"), "--ros-args", "--params-file", str(params)], ready=ready)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class RosClient:
    """An rclpy node in the test process with its own context, spun on a background thread."""

    def __init__(self, name: str = "test_client") -> None:
        import rclpy

        from vjepa2_ros.ros_utils import SteadyExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SteadyExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def call(self, client, request, timeout: float = 30.0):
        """Wait for the service, call it, return the response (raises TimeoutError with the service name)."""
        if not client.wait_for_service(timeout_sec=20.0):
            raise TimeoutError(f"service {client.srv_name} not available")
        future = client.call_async(request)
        if not wait_until(future.done, timeout):
            raise TimeoutError(f"no response from {client.srv_name} within {timeout} s")
        return future.result()

    def wait_future(self, future, timeout: float = 30.0):
        if not wait_until(future.done, timeout):
            raise TimeoutError(f"future not done within {timeout} s")
        return future.result()

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(5)  # spin has returned before anything it waits on is destroyed
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


# ---------------------------------------------------------------------------------------------------------------
# The planner under test: parameters and a harness with a client for every interface

PLANNER = "/vjepa2_planner"
MAXNORM = 0.05
MAX_TRANSLATION = 0.04  # below maxnorm * sqrt(3): the safety clamp is what bounds commands
CONTROL_RATE = 10.0
STALE_TIMEOUT = 1.5  # generous: callbacks of 3 processes on 2 busy cores can lag by a few hundred ms


def planner_params(checkpoint: Path, **overrides) -> dict:
    params = {
        "model": {"checkpoint": str(checkpoint), "num_threads": 1},  # 3 processes share 2 cores
        "cem": {"horizon": 2, "samples": 12, "iterations": 2, "topk": 4, "maxnorm": MAXNORM},
        "control_rate": CONTROL_RATE,
        "topics": {"camera": "/robot/camera/image_raw", "ee_pose": "/robot/ee_pose", "gripper": "/robot/gripper"},
        "safety": {
            "max_translation": MAX_TRANSLATION,
            "stale_timeout": STALE_TIMEOUT,
            "plan_deadline": 20.0,
            "workspace_min": [-2.0, -2.0, -1.0],
            "workspace_max": [2.0, 2.0, 2.0],
        },
    }
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        (params.setdefault(section, {}) if section else params)[name] = value
    return {"/**": {"ros__parameters": params}}


def write_params(path: Path, checkpoint: Path, **overrides) -> Path:
    path.write_text(yaml.safe_dump(planner_params(checkpoint, **overrides)))
    return path


class Harness:
    """Clients for every planner interface plus recorders of what the planner publishes."""

    def __init__(self, client: RosClient) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped, TwistStamped
        from nav_msgs.msg import Path as PathMsg
        from rclpy.action import ActionClient
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from std_srvs.srv import SetBool, Trigger

        from vjepa2_interfaces.action import ReachGoal
        from vjepa2_interfaces.srv import PlanToGoal

        node = client.node
        self.client = client
        self.plan = node.create_client(PlanToGoal, f"{PLANNER}/plan_to_goal")
        self.stop = node.create_client(Trigger, f"{PLANNER}/stop")
        self.resume = node.create_client(Trigger, f"{PLANNER}/resume")
        self.camera = node.create_client(SetBool, "/test_robot/set_camera")
        self.reach = ActionClient(node, ReachGoal, f"{PLANNER}/reach_goal")
        self.lock = threading.Lock()
        self.targets: list[tuple[float, np.ndarray]] = []
        self.target_stamps: list[float] = []  # header stamps (the planner's clock when it sent each command)
        self.robot_pose: np.ndarray | None = None
        self.diag: dict[str, str] = {}
        self.diag_count = 0
        node.create_subscription(PoseStamped, f"{PLANNER}/ee_target", self._on_target, 100)
        node.create_subscription(PoseStamped, "/robot/ee_pose", self._on_pose, qos_profile_sensor_data)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.twists: list[np.ndarray] = []
        self.twist_times: list[float] = []  # receive times of `twists`
        self.twist_stamps: list[float] = []  # header stamps of `twists`
        self.path = None
        self.path_stamps: list[float] = []  # header stamps of the planned paths (one per plan, before its command)
        self.debug_image = None
        node.create_subscription(TwistStamped, f"{PLANNER}/ee_twist", self._on_twist, 100)
        node.create_subscription(PathMsg, f"{PLANNER}/planned_path", self._on_path, 10)
        node.create_subscription(Image, f"{PLANNER}/debug_image", lambda m: setattr(self, "debug_image", m), 1)
        self.bad_camera = node.create_publisher(Image, "/robot/camera/image_raw", 1000)

    def _on_target(self, msg) -> None:
        p = msg.pose.position
        with self.lock:
            self.targets.append((time.monotonic(), np.array([p.x, p.y, p.z])))
            self.target_stamps.append(stamp_seconds(msg))

    def _on_twist(self, msg) -> None:
        lin, ang = msg.twist.linear, msg.twist.angular
        with self.lock:
            self.twists.append(np.array([lin.x, lin.y, lin.z, ang.x, ang.y, ang.z]))
            self.twist_times.append(time.monotonic())
            self.twist_stamps.append(stamp_seconds(msg))

    def _on_path(self, msg) -> None:
        with self.lock:
            self.path = msg
            self.path_stamps.append(stamp_seconds(msg))

    def targets_stamped_after(self, wall_time: float) -> list[float]:
        """Stamps of the commands the planner sent after `wall_time` (time.time(); the planner stamps with the
        same system clock, so a stall of this process cannot make an early command look late)."""
        with self.lock:
            return [t for t in self.target_stamps if t > wall_time]

    def wait_next_plan(self, timeout: float = 60.0) -> None:
        """Wait until the planner has planned a step after its latest command: the step's path is published when
        its plan is done, before its command waits out the rest of the control period."""
        with self.lock:
            last = self.target_stamps[-1]
        ok = wait_until(lambda: bool(self.path_stamps) and self.path_stamps[-1] > last, timeout)
        assert ok, f"no plan after the command stamped {last}"

    def _on_pose(self, msg) -> None:
        p = msg.pose.position
        self.robot_pose = np.array([p.x, p.y, p.z])

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith("vjepa2_planner"):
                with self.lock:
                    self.diag = {kv.key: kv.value for kv in status.values} | {
                        "_level": status.level,
                        "_message": status.message,
                    }
                    self.diag_count += 1

    def n_targets(self) -> int:
        with self.lock:
            return len(self.targets)

    def wait_diag(self, predicate, timeout: float = 30.0) -> dict:
        """Wait for a diagnostics message (newer than now) that satisfies `predicate`."""
        start = self.diag_count
        ok = wait_until(lambda: self.diag_count > start and predicate(self.diag), timeout)
        assert ok, f"diagnostics never matched; last: {self.diag}"
        return dict(self.diag)

    def trigger(self, client) -> object:
        from std_srvs.srv import Trigger

        return self.client.call(client, Trigger.Request())

    def send_goal(self, goal_image, feedback: list, **fields):
        from vjepa2_interfaces.action import ReachGoal

        assert self.reach.wait_for_server(timeout_sec=20.0), "reach_goal action server not available"
        goal = ReachGoal.Goal(goal_image=goal_image, **fields)
        handle = self.client.wait_future(self.reach.send_goal_async(goal, feedback_callback=feedback.append))
        assert handle.accepted, "goal rejected"
        return handle

    def reach_settled(self, goal_image, feedback: list, attempts: int = 3, **fields) -> tuple[object, int]:
        """Send ReachGoal and wait for its result, resent while it ends on a transient hiccup of the busy 2-core
        machine (stale inputs, a missed deadline); any other outcome is returned at once. Returns the result and
        the command count before the attempt that gave it."""
        for _ in range(attempts):
            before = self.n_targets()
            feedback.clear()
            handle = self.send_goal(goal_image, feedback, **fields)
            result = self.client.wait_future(handle.get_result_async(), timeout=120.0)
            if status_name(result.status) != "aborted" or not transient(result.result.message):
                break
            self.wait_diag(lambda d: d.get("blocking") == "none")  # resent once the inputs are fresh again
        return result, before

    def plan_settled(self, request, attempts: int = 3, timeout: float = 30.0):
        """PlanToGoal, re-asked while it fails on a transient hiccup (as `reach_settled`)."""
        for _ in range(attempts):
            response = self.client.call(self.plan, request, timeout=timeout)
            if response.success or not transient(response.message):
                break
        return response

    def start_reach(self, goal_image, feedback: list, commands: int, attempts: int = 3, **fields):
        """Send ReachGoal until one produces `commands` commands: on a busy 2-core machine a goal can end early
        on a transient hiccup (stale inputs, missed deadline) before commanding anything."""
        for _ in range(attempts):
            before = self.n_targets()
            feedback.clear()
            handle = self.send_goal(goal_image, feedback, **fields)
            if wait_until(lambda b=before: self.n_targets() >= b + commands, 60.0):
                return handle
            self.client.wait_future(handle.cancel_goal_async())
        raise AssertionError(
            f"no commands from {attempts} goals; last feedback {[f.feedback.status for f in feedback]}"
        )


def ready_harness(name: str, timeout: float = 30.0) -> Iterator[Harness]:
    """The ROS tests' `ros` fixture: a Harness on client node `name` once the test robot's pose arrives and the
    planner reports fresh camera and state (diagnostics `blocking: none` within `timeout` s); closed after."""
    client = RosClient(name)
    harness = Harness(client)
    try:
        assert wait_until(lambda: harness.robot_pose is not None, 20.0), "no robot pose received"
        harness.wait_diag(lambda d: d.get("blocking") == "none", timeout=timeout)
        yield harness
    finally:
        client.close()


def stamp_seconds(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def load_traj(npz: Path) -> dict:
    """The Franka example trajectory: frames uint8 [2,256,256,3] (start, goal) and states float64 [2,7]."""
    data = np.load(npz)
    return {"frames": data["observations"][0], "states": data["states"][0].astype(np.float64)}


def image_msg(rgb: np.ndarray, encoding: str = "rgb8"):
    from vjepa2_ros.conversions import rgb_to_image

    return rgb_to_image(rgb, encoding)


def plan_request(goal, **fields):
    from vjepa2_interfaces.srv import PlanToGoal

    return PlanToGoal.Request(goal_image=goal, **fields)


def transient(message: str) -> bool:
    """Whether a planner refusal is a hiccup of a busy machine (inputs late, plan late) rather than the outcome."""
    from vjepa2_core.planning.safety import DEADLINE_MISSED, STALE_CAMERA, STALE_STATE  # not in the robot process

    return any(reason in message for reason in (STALE_CAMERA, STALE_STATE, DEADLINE_MISSED))


def status_name(code: int) -> str:
    from action_msgs.msg import GoalStatus

    return {
        GoalStatus.STATUS_SUCCEEDED: "succeeded",
        GoalStatus.STATUS_ABORTED: "aborted",
        GoalStatus.STATUS_CANCELED: "canceled",
    }.get(code, str(code))


# ---------------------------------------------------------------------------------------------------------------
# The test robot (run as a script)


def robot_main(argv: list[str] | None = None) -> int:
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Float64
    from std_srvs.srv import SetBool

    from vjepa2_ros import conversions as conv

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", required=True)
    parser.add_argument("--camera-rate", type=float, default=15.0)
    parser.add_argument("--state-rate", type=float, default=30.0)
    parser.add_argument("--encoding", default="bgr8", help="raw encoding, or jpeg/png for CompressedImage")
    parser.add_argument("--camera-topic", default="/robot/camera/image_raw")
    parser.add_argument("--target-topic", default="/vjepa2_planner/ee_target")
    parser.add_argument("--gripper-topic", default="/vjepa2_planner/gripper_command")
    args, ros_args = parser.parse_known_args(argv)

    data = np.load(args.npz)
    frames, states = data["observations"][0], data["states"][0].astype(np.float64)

    class TestRobot(Node):
        def __init__(self) -> None:
            super().__init__("test_robot")
            self.state = states[0].copy()
            self.camera_on = True
            self.targets = 0
            compressed = args.encoding in ("jpeg", "png")
            cam_type = CompressedImage if compressed else Image
            self.pub_cam = self.create_publisher(cam_type, args.camera_topic, qos_profile_sensor_data)
            self.pub_pose = self.create_publisher(PoseStamped, "/robot/ee_pose", qos_profile_sensor_data)
            self.pub_grip = self.create_publisher(Float64, "/robot/gripper", qos_profile_sensor_data)
            self.create_subscription(PoseStamped, args.target_topic, self.on_target, 10)
            self.create_subscription(Float64, args.gripper_topic, self.on_gripper, 10)
            self.create_service(SetBool, "~/set_camera", self.on_set_camera)
            self.create_timer(1.0 / args.camera_rate, self.publish_camera)
            self.create_timer(1.0 / args.state_rate, self.publish_state)
            encode = conv.rgb_to_compressed if compressed else conv.rgb_to_image
            self.encoded = [encode(f, args.encoding) for f in frames]

        def on_target(self, msg: PoseStamped) -> None:
            try:
                target = conv.pose_to_state(msg.pose, self.state[6])
            except ValueError:
                return
            if np.isfinite(target).all():
                self.state[:6] = target[:6]
                self.targets += 1

        def on_gripper(self, msg: Float64) -> None:
            if np.isfinite(msg.data):
                self.state[6] = float(np.clip(msg.data, 0.0, 1.0))

        def on_set_camera(self, req, resp):
            self.camera_on = bool(req.data)
            resp.success, resp.message = True, f"camera {'on' if self.camera_on else 'off'}"
            return resp

        def publish_camera(self) -> None:
            if not self.camera_on:
                return
            nearest = int(np.argmin(np.linalg.norm(states[:, :3] - self.state[:3], axis=1)))
            msg = self.encoded[nearest]
            msg.header.stamp = self.get_clock().now().to_msg()
            self.pub_cam.publish(msg)

        def publish_state(self) -> None:
            stamp = self.get_clock().now().to_msg()
            self.pub_pose.publish(conv.state_to_pose_stamped(self.state, "base", stamp))
            self.pub_grip.publish(Float64(data=float(self.state[6])))

    rclpy.init(args=ros_args)
    node = TestRobot()
    print("test_robot ready", flush=True)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(robot_main())
