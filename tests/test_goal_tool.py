"""`vjepa2-goal` as a real process against the real planner node and the test robot over DDS: capture the frame the
planner plans from, send goals (feedback, sub-goals, Ctrl-C), plan only, and the errors users see."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from ros_helpers import (
    BIN,
    PLANNER,
    NodeProcess,
    image_msg,
    plan_request,
    ready_harness,
    start_planner,
    start_test_robot,
    transient,
    write_params,
)

from vjepa2_core.data.images import decode_compressed, encode_compressed, read_image_file, write_png

pytestmark = pytest.mark.ros
TOOL = str(BIN / "vjepa2-goal")
ATTEMPTS = 3  # a goal can end early on a transient hiccup of the busy 2-core machine (stale inputs, late plan)


@pytest.fixture(scope="module")
def images(traj, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("goal_images")
    return {name: write_png(folder / f"{name}.png", traj["frames"][i]) for i, name in enumerate(["start", "goal"])}


@pytest.fixture(scope="module")
def planner(franka_npz, checkpoint, tmp_path_factory):
    robot = start_test_robot(franka_npz)
    # subgoal_steps: a goal with sub-goal images moves on after 2 steps on each
    proc = start_planner(write_params(tmp_path_factory.mktemp("params") / "planner.yaml", checkpoint, subgoal_steps=2))
    yield proc
    proc.stop()
    robot.stop()


@pytest.fixture(scope="module")
def ros(planner):
    yield from ready_harness("goal_tool_test_client")


def run_tool(*args, timeout: float = 300.0) -> subprocess.CompletedProcess:
    return subprocess.run([TOOL, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def send_settled(*args) -> subprocess.CompletedProcess:
    """`vjepa2-goal send ...`, rerun while the goal ended on a transient hiccup (as Harness.reach_settled)."""
    for _ in range(ATTEMPTS):
        proc = run_tool("send", *args)
        if proc.returncode == 0 or not transient(proc.stdout + proc.stderr):
            break
    return proc


def step_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("step ")]


def shown_frame(ros, traj) -> np.ndarray:
    """The frame the test camera publishes now: the trajectory frame nearest to the robot's position."""
    return traj["frames"][int(np.argmin(np.linalg.norm(traj["states"][:, :3] - ros.robot_pose, axis=1)))]


def test_capture_saves_the_frame_the_planner_plans_from(ros, traj, tmp_path):
    expected = shown_frame(ros, traj)  # no goal is active: the robot stands still
    proc = run_tool("capture", "--out", tmp_path / "node.png", "--timeout", 60)
    assert proc.returncode == 0, proc.stderr
    assert f"the frame {PLANNER} plans from" in proc.stdout and "256x256" in proc.stdout
    # the robot publishes bgr8: the node's view is that frame decoded to RGB, saved losslessly
    np.testing.assert_array_equal(read_image_file(tmp_path / "node.png"), expected)
    proc = run_tool("capture", "--out", tmp_path / "topic.png", "--topic", "/robot/camera/image_raw", "--timeout", 60)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(read_image_file(tmp_path / "topic.png"), expected)
    # what the encoder sees: the tiny model's 64 x 64 input, the same 4x bilinear reduction as OpenCV's
    proc = run_tool("capture", "--out", tmp_path / "view.png", "--encoder-view", "--timeout", 60)
    assert proc.returncode == 0, proc.stderr
    view = read_image_file(tmp_path / "view.png")
    assert view.shape == (64, 64, 3) and "what the encoder of" in proc.stdout
    reference = cv2.resize(expected, (64, 64), interpolation=cv2.INTER_LINEAR)
    assert np.abs(view.astype(int) - reference).max() <= 1


def test_capture_from_a_compressed_topic_decodes_as_the_node(ros, traj, tmp_path):
    from sensor_msgs.msg import CompressedImage

    from vjepa2_ros.conversions import compressed_to_rgb, rgb_to_compressed

    msg = rgb_to_compressed(traj["frames"][1], "jpeg")
    pub = ros.client.node.create_publisher(CompressedImage, "/goal_test/image_raw/compressed", 10)
    timer = ros.client.node.create_timer(0.1, lambda: pub.publish(msg))  # publish until the tool has one
    try:
        proc = run_tool("capture", "--out", tmp_path / "c.png", "--topic", "/goal_test/image_raw/compressed")
    finally:
        ros.client.node.destroy_timer(timer)
        ros.client.node.destroy_publisher(pub)
    assert proc.returncode == 0, proc.stderr
    assert "a CompressedImage frame of /goal_test/image_raw/compressed" in proc.stdout
    saved = read_image_file(tmp_path / "c.png")
    np.testing.assert_array_equal(saved, compressed_to_rgb(msg))  # what the planner's camera callback decodes
    np.testing.assert_array_equal(saved, decode_compressed("jpeg", encode_compressed(traj["frames"][1], "jpeg")))


def test_capture_errors_are_clear(ros, tmp_path):
    out = tmp_path / "x.png"
    proc = run_tool("capture", "--out", out, "--topic", "/nobody/publishes/this", "--timeout", 3)
    assert proc.returncode == 1 and "nothing is published on /nobody/publishes/this" in proc.stderr, proc.stderr
    from sensor_msgs.msg import Image

    silent = ros.client.node.create_publisher(Image, "/goal_test/silent_camera", 1)  # a camera that sends nothing
    try:
        proc = run_tool("capture", "--out", out, "--topic", "/goal_test/silent_camera", "--timeout", 10)
    finally:
        ros.client.node.destroy_publisher(silent)
    assert proc.returncode == 1 and "no frame arrived on /goal_test/silent_camera within 10 s" in proc.stderr
    proc = run_tool("capture", "--out", out, "--topic", "/robot/ee_pose", "--timeout", 30)
    assert proc.returncode == 2 and "geometry_msgs/msg/PoseStamped, not sensor_msgs/Image" in proc.stderr
    proc = run_tool("capture", "--out", out, "--node", "/no_planner", "--timeout", 3)
    assert proc.returncode == 2 and "no planner node at /no_planner" in proc.stderr
    assert not out.exists()


def test_send_reaches_the_goal_and_prints_each_step(ros, images):
    before = ros.n_targets()
    proc = send_settled("--goal", images["goal"], "--max-steps", 3)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = step_lines(proc.stdout)
    assert [line.split()[1] for line in steps] == ["1", "2", "3"], proc.stdout
    assert all("energy " in line and "command dxyz " in line and "grip " in line for line in steps)
    assert "succeeded: max_steps 3 reached; 3 steps" in proc.stdout.splitlines()[-1]
    assert ros.n_targets() >= before + 3  # the arm was commanded


def test_subgoals_are_reported_in_feedback(ros, images):
    proc = send_settled("--goal", images["goal"], "--subgoals", images["start"], "--max-steps", 4)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stages = [line.split("goal ")[1].split()[0] for line in step_lines(proc.stdout)]
    assert stages == ["1/2", "1/2", "2/2", "2/2"], proc.stdout  # two steps on the sub-goal, then on the goal
    assert "(1 sub-goals)" in proc.stdout


def test_a_stopped_planner_aborts_the_goal_and_send_exits_1(ros, images):
    assert ros.trigger(ros.stop).success
    try:
        proc = run_tool("send", "--goal", images["goal"], "--max-steps", 3)
    finally:
        assert ros.trigger(ros.resume).success
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "aborted: safety stop: stopped; 0 steps" in proc.stdout.splitlines()[-1], proc.stdout


def test_sigint_cancels_the_goal_and_waits_for_the_node(ros, images):
    for _ in range(ATTEMPTS):
        tool = NodeProcess([TOOL, "send", "--goal", str(images["goal"]), "--max-steps", "500"])
        # the first command was sent: the goal is running (a hiccup can end it before; then it is resent)
        if tool.wait_for_line("command dxyz", 120.0) and tool.alive():
            break
        tool.proc.send_signal(signal.SIGINT)  # never leave a goal running behind a test
        tool.proc.wait(120)
    tool.proc.send_signal(signal.SIGINT)
    tool.proc.wait(120)
    tool._reader.join(10)
    out = tool.output()
    assert tool.proc.returncode == 1, out
    assert "Ctrl-C: cancelling the goal" in out
    assert "canceled (cancel confirmed by the planner): canceled" in out.splitlines()[-1], out
    ros.wait_diag(lambda d: d.get("goal_active") == "False")  # the node is free for the next goal


def test_plan_only_prints_the_plan_and_does_not_move(ros, traj, images):
    before = ros.n_targets()
    for _ in range(ATTEMPTS):
        proc = run_tool("send", "--goal", images["goal"], "--plan-only", "--budget", "10,2,3", "--seed", 7)
        if proc.returncode == 0 or not transient(proc.stdout):
            break
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "planned 3 steps" in proc.stdout and "predicted energy" in proc.stdout and "did not move" in proc.stdout
    first = next(line for line in proc.stdout.splitlines() if line.startswith("first action"))
    printed = [float(v) for v in first.split(":")[1].split()]
    # the same request made directly (same inputs, same seed) gives the same plan
    direct = ros.plan_settled(plan_request(image_msg(traj["frames"][1]), horizon=3, samples=10, iterations=2, seed=7))
    assert direct.success, direct.message
    np.testing.assert_allclose(printed, direct.actions[:7], atol=5e-5)
    assert ros.n_targets() == before, "--plan-only must not move the arm"


def test_budget_is_set_for_the_goal_and_restored(ros, planner, images):
    from rcl_interfaces.srv import GetParameters

    names = ["cem.samples", "cem.iterations", "cem.horizon", "cem.topk"]
    get = ros.client.node.create_client(GetParameters, f"{PLANNER}/get_parameters")
    before = [v.integer_value for v in ros.client.call(get, GetParameters.Request(names=names)).values]
    proc = send_settled("--goal", images["goal"], "--max-steps", 1, "--budget", "3,1,0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert planner.wait_for_line("'cem.samples': 3, 'cem.iterations': 1", 30.0), planner.output()[-2000:]
    after = [v.integer_value for v in ros.client.call(get, GetParameters.Request(names=names)).values]
    assert after == before


def test_bad_files_bad_arguments_and_a_missing_node_exit_2(ros, images, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    cases = [
        (["send", "--goal", tmp_path / "missing.png"], "cannot read image"),
        (["send", "--goal", text], "is not a usable image"),
        (["send", "--goal", images["goal"], "--subgoals", images["start"], text], "is not a usable image"),
        (["send", "--goal", images["goal"], "--budget", "10,2"], "--budget takes samples,iterations,horizon"),
        (
            ["send", "--goal", images["goal"], "--node", "/no_planner", "--timeout", 3],
            "no planner node at /no_planner",
        ),
        (
            ["send", "--goal", images["goal"], "--plan-only", "--node", "/no_planner", "--timeout", 3],
            "no planner node",
        ),
    ]
    before = ros.n_targets()
    for args, message in cases:
        proc = run_tool(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
    assert ros.n_targets() == before
