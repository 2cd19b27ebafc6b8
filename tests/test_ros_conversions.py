"""Message conversions, parameter validation and node helpers, checked against scipy and exact round trips."""

from __future__ import annotations

import array
import math
import threading

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from scipy.spatial.transform import Rotation

from vjepa2_ros import conversions as conv
from vjepa2_ros.planner_node import PARAMETERS, PlannerSettings
from vjepa2_ros.ros_utils import ParameterError, PlanWorker, check_range, coerce, debug_view

STAMP = Time(sec=12, nanosec=345)


@pytest.fixture(scope="module")
def traj(franka_npz):
    data = np.load(franka_npz)
    return data["observations"][0], data["states"][0].astype(np.float64)


def test_pose_round_trip_matches_scipy(traj):
    rng = np.random.default_rng(0)
    states = np.concatenate(
        [traj[1], np.c_[rng.uniform(-1, 1, (20, 3)), rng.uniform(-3, 3, (20, 3)), rng.uniform(0, 1, 20)]]
    )
    states[-1, 3:6] = [0.3, math.pi / 2, -0.2]  # gimbal lock
    for state in states:
        pose = conv.state_to_pose(state)
        q = [pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w]
        ref = Rotation.from_euler("xyz", state[3:6])
        assert Rotation.from_quat(q).approx_equal(ref, atol=1e-9)
        back = conv.pose_to_state(pose, state[6])
        np.testing.assert_allclose(back[:3], state[:3])
        assert Rotation.from_euler("xyz", back[3:6]).approx_equal(ref, atol=1e-6)
        assert back[6] == state[6]


def test_unnormalised_and_invalid_quaternions():
    pose = conv.state_to_pose([0, 0, 0, 0.1, 0.2, 0.3, 0])
    o = pose.orientation
    o.x, o.y, o.z, o.w = 2 * o.x, 2 * o.y, 2 * o.z, 2 * o.w
    np.testing.assert_allclose(conv.pose_to_state(pose, 0.0)[3:6], [0.1, 0.2, 0.3], atol=1e-9)
    o.x = o.y = o.z = o.w = 0.0
    with pytest.raises(ValueError, match="not a valid quaternion"):
        conv.pose_to_state(pose, 0.0)
    with pytest.raises(ValueError, match="7 values"):
        conv.state_to_pose([0.0] * 6)


def test_twist_is_the_action_over_one_period():
    action = np.array([0.01, -0.02, 0.03, 0.1, -0.05, 0.2, 0.5])
    msg = conv.action_to_twist(action, 0.5, "base", STAMP)
    lin = [msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z]
    ang = [msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z]
    np.testing.assert_allclose(lin, action[:3] / 0.5)
    np.testing.assert_allclose(ang, Rotation.from_euler("xyz", action[3:6]).as_rotvec() / 0.5, atol=1e-12)
    assert msg.header.frame_id == "base" and msg.header.stamp == STAMP
    with pytest.raises(ValueError, match="period"):
        conv.action_to_twist(action, 0.0, "base", STAMP)


def test_path_follows_composed_actions(traj):
    state = traj[1][0]
    actions = np.array([[0.01, 0, 0, 0, 0, 0.1, 0.2], [0, 0.02, -0.01, 0, 0, 0, -0.1]])
    path = conv.plan_to_path(state, actions, "base", STAMP)
    assert len(path.poses) == 3 and path.header.frame_id == "base"
    expected = conv.compose(conv.compose(state, actions[0]), actions[1])
    last = conv.pose_to_state(path.poses[-1].pose, expected[6])
    np.testing.assert_allclose(last[:3], expected[:3], atol=1e-12)
    rot = Rotation.from_euler("xyz", actions[1, 3:6]) * Rotation.from_euler("xyz", actions[0, 3:6])
    rot = rot * Rotation.from_euler("xyz", state[3:6])
    assert Rotation.from_euler("xyz", last[3:6]).approx_equal(rot, atol=1e-6)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_image_messages_round_trip(traj, encoding):
    frame = traj[0][0]
    msg = conv.rgb_to_image(frame, encoding, STAMP, "cam")
    assert msg.encoding == encoding and msg.header.frame_id == "cam"
    np.testing.assert_array_equal(conv.image_to_rgb(msg), frame)
    png = conv.rgb_to_compressed(frame, "png", STAMP)
    np.testing.assert_array_equal(conv.compressed_to_rgb(png), frame)
    assert not conv.is_empty_image(msg) and conv.is_empty_image(type(msg)())


def values(**overrides):
    v = {name: p.default for name, p in PARAMETERS.items()}
    v["model.checkpoint"] = "/tmp/model.pt"
    v.update(overrides)
    return v


def test_default_parameters_with_a_checkpoint_are_valid():
    s = PlannerSettings.from_values(values())
    assert s.planning.cem.samples == 400 and s.topics["camera"] == "camera/image_raw"
    assert s.limits.max_translation == 0.05 and s.limits.workspace_max == (1.0, 1.0, 1.5)
    assert s.planning.cem.workspace == ((-1.0, -1.0, 0.0), (1.0, 1.0, 1.5)), "plans search the safety box"


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"model.checkpoint": ""}, "model.checkpoint"),
        ({"cem.samples": 0}, "topk <= samples"),
        ({"cem.topk": 500}, "topk <= samples"),
        ({"cem.momentum_std": 1.0}, "momentum_std.* must be in"),
        ({"cem.planner": "telepathy"}, "planner must be one of"),
        ({"cem.axis": "gripper"}, "cem.axis entries"),
        ({"max_steps": 0}, "max_steps >= 1"),
        ({"model.image_size": 100}, "multiple of 16"),
        ({"model.num_threads": -1}, "num_threads' must be >= 0"),
        ({"model.precision": "fp16"}, "model.precision' must be one of"),
        ({"model.device": "gpu7"}, "not a torch device"),
        ({"control_rate": -1.0}, "control_rate"),
        ({"camera_transport": "theora"}, "raw or compressed"),
        ({"topics.camera": ""}, "topics.camera' must not be empty"),
        ({"safety.workspace_min": [2.0, 0.0, 0.0]}, "min < max"),
        ({"safety.stale_timeout": 0.0}, "stale_timeout"),
    ],
)
def test_invalid_parameters_are_rejected(overrides, match):
    with pytest.raises(ParameterError, match=match):
        PlannerSettings.from_values(values(**overrides))


def test_parameter_types_are_coerced_only_when_safe():
    assert coerce("a", 2, 1.5) == 2.0 and isinstance(coerce("a", 2, 1.5), float)
    assert coerce("a", [0, 1, 2], [0.0]) == [0.0, 1.0, 2.0]
    assert coerce("a", array.array("d", [1.5, 2.0]), [0.0]) == [1.5, 2.0]  # how rclpy hands over double arrays
    for value, default in [(True, 3), (1.5, 3), ("x", 1.0), ([1, "a"], [0.0]), (3, "s")]:
        with pytest.raises(ParameterError, match="must be of type"):
            coerce("a", value, default)


def test_ranges_hold_whatever_the_wire_type():
    """An integer for a double parameter passes rclpy's float range unchecked; check_range checks every number."""
    from vjepa2_ros.planner_node import LIVE

    check_range("control_rate", coerce("control_rate", 100, 2.0), LIVE["control_rate"])
    for name, value in [("control_rate", 1000), ("safety.max_translation", 5), ("safety.stale_timeout", 3600.0)]:
        with pytest.raises(ParameterError, match=f"'{name}'={float(value)!r} is outside its range"):
            check_range(name, coerce(name, value, 1.0), LIVE[name])
    with pytest.raises(ParameterError, match="outside its range"):
        check_range("control_rate", math.nan, LIVE["control_rate"])


def test_plan_worker_runs_jobs_in_order_and_reports_errors():
    worker = PlanWorker()
    order, gate = [], threading.Event()
    first = worker.submit(lambda: gate.wait(5) and order.append(1))
    second = worker.submit(lambda x: order.append(x) or x * 2, 21)
    failing = worker.submit(lambda: 1 / 0)
    assert not second.done()
    gate.set()
    assert second.result(5) == 42 and first.result(5) is None and order == [1, 21]
    assert isinstance(failing.exception(5), ZeroDivisionError)
    assert worker.close(timeout=5.0)


def test_debug_view_puts_current_and_goal_side_by_side(traj):
    view = debug_view(traj[0][0], traj[0][1], "energy 0.1234", height=120)
    assert view.shape == (120 + 28, 240, 3) and view.dtype == np.uint8
    assert view[120:].max() == 255  # the white text banner
    assert debug_view(traj[0][0], None, "no goal", height=64).shape == (64 + 28, 64, 3)


def test_axis_parameter_pins_the_gripper(traj, tmp_path):
    from vjepa2_core.hub import make_random_checkpoint
    from vjepa2_ros.planner_node import load_controller

    free = PlannerSettings.from_values(values())
    assert free.planning.cem.axis == {}
    ckpt = make_random_checkpoint(tmp_path / "tiny.pt", "vit_ac_tiny")
    v = values(**{"model.checkpoint": str(ckpt), "cem.samples": 16, "cem.iterations": 2, "cem.axis": "gripper=0"})
    settings = PlannerSettings.from_values(v)
    assert settings.planning.cem.axis == {"gripper": 0.0}
    images, states = traj
    plan = load_controller(settings).plan(images[0], states[0], images[1], seed=3)
    assert plan.actions[:, 6].abs().max() == 0 and plan.actions[:, :3].abs().max() > 0


def test_guarded_callback_exception_is_answered_and_the_node_keeps_spinning():
    """A service callback that raises (a bug, an unexpected input) answers "internal error" instead of ending
    the executor's spin: a real node and client over DDS, the second call is served too."""
    import rclpy
    from ros_helpers import RosClient, wait_until
    from std_srvs.srv import Trigger

    from vjepa2_ros.planner_node import _failed_response, guarded
    from vjepa2_ros.ros_utils import SteadyExecutor

    class Server(rclpy.node.Node):
        def __init__(self, context):
            super().__init__("guarded_server", context=context)
            self._lock, self._counts, self.calls = threading.Lock(), {"callback_errors": 0}, 0
            self.create_service(Trigger, "/guarded_test/boom", self.on_boom)

        @guarded(_failed_response)
        def on_boom(self, _req, resp):
            self.calls += 1
            raise RuntimeError(f"bug number {self.calls}")

    context = rclpy.Context()
    rclpy.init(context=context)
    server = Server(context)
    executor = SteadyExecutor(num_threads=2, context=context)
    executor.add_node(server)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    client = RosClient("guarded_client")
    try:
        boom = client.node.create_client(Trigger, "/guarded_test/boom")
        for n in (1, 2):
            resp = client.call(boom, Trigger.Request(), timeout=20.0)
            assert not resp.success and resp.message == f"internal error: RuntimeError: bug number {n}"
        assert spinner.is_alive() and server._counts["callback_errors"] == 2
    finally:
        client.close()
        executor.shutdown(timeout_sec=2.0)
        assert wait_until(lambda: not spinner.is_alive(), 5.0)
        server.destroy_node()
        rclpy.try_shutdown(context=context)
