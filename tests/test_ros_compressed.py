"""Planner node with a CompressedImage (jpeg) camera and a plan deadline that the default budget misses."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from ros_helpers import (
    REPO,
    Harness,
    NodeProcess,
    RosClient,
    ensure_interfaces,
    image_msg,
    plan_request,
    start_planner,
    status_name,
    wait_until,
    write_params,
)

pytestmark = pytest.mark.ros

CAMERA = "/robot/camera/compressed"
DEADLINE = 1.5  # seconds: a 10-sample plan takes ~20 ms (plus warm-up), the 400 x 20 x 5 default many seconds


@pytest.fixture(scope="module")
def ros(franka_npz, tmp_path_factory):
    from vjepa2_core.hub import make_random_checkpoint

    ensure_interfaces()
    tmp = tmp_path_factory.mktemp("compressed")
    ckpt = make_random_checkpoint(tmp / "vit_ac_tiny.pt", "vit_ac_tiny")
    overrides = {
        "camera_transport": "compressed",
        "topics.camera": CAMERA,
        "safety.plan_deadline": DEADLINE,
        "cem.samples": 400,
        "cem.iterations": 20,
        "cem.topk": 10,
        "cem.horizon": 5,
    }
    params = write_params(tmp / "planner.yaml", ckpt, **overrides)
    robot = NodeProcess(
        [
            sys.executable,
            str(REPO / "tests/ros_helpers.py"),
            "--npz",
            str(franka_npz),
            "--encoding",
            "jpeg",
            "--camera-topic",
            CAMERA,
        ],
        ready="test_robot ready",
    )
    planner = start_planner(params)
    client = RosClient("compressed_test_client")
    harness = Harness(client)
    harness.planner_proc = planner
    try:
        harness.wait_diag(lambda d: d.get("blocking") == "none", timeout=30.0)
        yield harness
    finally:
        client.close()
        code, seconds = planner.stop()
        robot.stop()
        assert code == 0 and seconds < 5.0, planner.output()[-3000:]


def test_jpeg_camera_frames_are_decoded_and_planned_from(ros, traj):
    from vjepa2_core.data.images import decode_compressed, encode_compressed

    diag = ros.wait_diag(lambda d: d["blocking"] == "none")
    assert diag["malformed_images"] == "0"
    state = traj["states"][0].tolist()  # the robot has not moved: no commands are sent in this module
    goal = image_msg(traj["frames"][1])
    budget = dict(horizon=1, samples=10, iterations=1, seed=3)
    from_camera = ros.plan_settled(plan_request(goal, current_state=state, **budget))  # ~20 ms; 1.5 s deadline
    assert from_camera.success, from_camera.message
    # the same jpeg decoded here and sent as a raw image gives the identical plan
    jpeg_frame = decode_compressed("jpeg", encode_compressed(traj["frames"][0], "jpeg"))
    explicit = ros.plan_settled(plan_request(goal, current_image=image_msg(jpeg_frame), current_state=state, **budget))
    assert explicit.success, explicit.message
    assert explicit.energy == pytest.approx(from_camera.energy, abs=1e-6)
    np.testing.assert_allclose(explicit.actions, from_camera.actions, atol=1e-6)


def test_missed_plan_deadline_sends_no_command(ros, traj):
    before = ros.n_targets()
    feedback: list = []
    handle = ros.send_goal(image_msg(traj["frames"][1]), feedback, max_steps=3)
    result = ros.client.wait_future(handle.get_result_async(), timeout=60.0)
    assert status_name(result.status) == "aborted" and "deadline_missed" in result.result.message
    assert result.result.steps == 0 and ros.n_targets() == before
    assert feedback and len(feedback[-1].feedback.action) == 0
    assert feedback[-1].feedback.status == "deadline_missed"
    diag = ros.wait_diag(lambda d: "deadline_missed" in d["last_stop_reasons"])
    assert int(diag["commands"]) == 0
    resp = ros.client.call(ros.plan, plan_request(image_msg(traj["frames"][1])), timeout=60.0)
    assert not resp.success and "deadline_missed" in resp.message and resp.planning_time >= DEADLINE
    # the deadline cancelled that search: the worker is free, a small plan right after is served in time
    quick = ros.client.call(ros.plan, plan_request(image_msg(traj["frames"][1]), horizon=1, samples=10, iterations=1))
    assert quick.success and quick.planning_time < DEADLINE, (quick.message, quick.planning_time)


def test_png_bomb_on_the_camera_is_dropped_before_decoding(ros, traj):
    """A 146 KB PNG that declares 20000 x 2500 pixels: counted as malformed, memory unchanged, node serving."""
    import psutil
    from sensor_msgs.msg import CompressedImage
    from test_images import png_bomb

    planner = ros.planner_proc
    rss_before = psutil.Process(planner.proc.pid).memory_info().rss
    start = int(ros.wait_diag(lambda d: True)["malformed_images"])
    pub = ros.client.node.create_publisher(CompressedImage, CAMERA, 10)
    assert wait_until(lambda: pub.get_subscription_count() >= 1, 20.0)
    bomb = CompressedImage(format="png")
    bomb.data = png_bomb()

    def counted(d: dict) -> bool:
        pub.publish(bomb)  # until seen: the robot's own frames share the depth-1 sensor-data history
        return int(d["malformed_images"]) > start

    ros.wait_diag(counted)
    grown = (psutil.Process(planner.proc.pid).memory_info().rss - rss_before) / 2**20
    print(f"planner RSS change after the PNG bomb: {grown:+.0f} MiB")
    assert grown < 100, f"planner RSS grew {grown:.0f} MiB"  # a decoded bomb alone is 143 MiB of BGR pixels
    state = traj["states"][0].tolist()
    resp = ros.client.call(ros.plan, plan_request(image_msg(traj["frames"][1]), current_state=state, samples=10,
                                                  iterations=1, horizon=1))  # fmt: skip
    assert resp.success, resp.message
    ros.client.node.destroy_publisher(pub)


def test_services_answer_while_plans_are_computed(ros, traj):
    """Planning runs on a worker thread: stop/resume are served while default (multi-second) plans run, and
    plan requests beyond the node's waiting slots are answered "busy" at once instead of taking executor threads."""
    plans = [ros.plan.call_async(plan_request(image_msg(traj["frames"][1]))) for _ in range(5)]
    assert ros.trigger(ros.stop).success
    assert not all(p.done() for p in plans), "stop was only answered after the plans"
    assert ros.trigger(ros.resume).message == "resumed"
    responses = [ros.client.wait_future(p, timeout=60.0) for p in plans]
    busy = [r for r in responses if r.message.startswith("busy")]
    served = [r for r in responses if not r.message.startswith("busy")]
    assert len(busy) >= 2, [r.message for r in responses]  # 5 requests, 2 slots (a slot frees after 0.5 s)
    assert all(not r.success and "deadline_missed" in r.message for r in served)
