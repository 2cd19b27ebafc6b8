"""Push through ROS 2: the simulator node serves its oracle's sub-goal images, and the demo and `--via-ros` send
them in one ReachGoal that the planner node works through (sub-goal switching over DDS)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from sensor_msgs.msg import Image  # noqa: E402
from test_sim_node import NODE, spin_until  # noqa: E402

from vjepa2_interfaces.srv import SubgoalImages  # noqa: E402
from vjepa2_ros.conversions import image_to_rgb  # noqa: E402
from vjepa2_ros.sim.env import FetchSim, SimConfig  # noqa: E402
from vjepa2_ros.sim.sim_node import LATCHED  # noqa: E402

pytestmark = pytest.mark.ros


def test_sim_node_serves_the_oracle_subgoals_of_the_episode(tmp_path):
    cmd = [sys.executable, "-m", "vjepa2_ros.sim.sim_node", "--ros-args", "-p", "task:=push", "-p", "seed:=1002"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    rclpy.init()
    node = rclpy.create_node("push_subgoal_client")
    try:
        goals: list[Image] = []
        node.create_subscription(Image, f"{NODE}/goal_image", goals.append, LATCHED)
        cli = node.create_client(SubgoalImages, f"{NODE}/subgoal_images")
        assert cli.wait_for_service(timeout_sec=60.0), "the sim node's ~/subgoal_images service did not appear"
        replies = {}
        for every in (1, 0, -1):
            future = cli.call_async(SubgoalImages.Request(every=every))
            assert spin_until(node, future.done), f"no answer for every={every}"
            replies[every] = future.result()
        assert spin_until(node, lambda: bool(goals))
        sim = FetchSim(SimConfig(task="push"), seed=0)
        try:
            sim.reset(seed=1002)  # the episode the node started
            expected = sim.subgoal_images(every=1)
        finally:
            sim.close()
        got = [image_to_rgb(m) for m in replies[1].images]
        assert replies[1].success and len(got) == len(expected) > 2, (replies[1].message, len(expected))
        for a, b in zip(got, expected, strict=True):
            assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.0  # the oracle's frames, as in-process
        np.testing.assert_array_equal(got[-1], image_to_rgb(goals[-1]))  # ... ending with the goal image
        assert replies[0].success and len(replies[0].images) == 2  # behind the block (planar: one pose), goal
        assert not replies[-1].success and "every" in replies[-1].message and proc.poll() is None
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


@pytest.mark.slow
def test_push_demo_sends_subgoals_and_the_planner_switches_after_two_steps(tmp_path):
    """The dense-oracle diagnostic (`--oracle-every 1`) through the nodes: the demo gives the planner its own
    switching rule (2 steps on each frame, over the push params' plateau rule) in a second params file."""
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "vjepa2_ros.sim.demo", "--task", "push", "--seed", "1002", "--max-steps", "3"]
    cmd += ["--oracle-every", "1"]
    res = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    n = int(re.search(r"\[demo\] (\d+) sub-goal images from the simulator oracle", res.stdout).group(1))
    stages = [int(g) for g in re.findall(r"\[demo\] step +\d+  goal (\d+)/", res.stdout)]
    assert n >= 2 and len(stages) == 3, res.stdout
    # the diagnostic's rule (episodes.ORACLE_SUBGOAL_STEPS): the next sub-goal after 2 steps on one, or earlier when
    # holding still wins
    assert stages[0] == 1 and stages[-1] >= 2, stages
    # one step may take both: the step rule's switch, then (holding still wins on the new one) the hold rule's
    assert all(b - a in (0, 1, 2) for a, b in zip(stages, stages[1:])) and stages.count(1) <= 2, stages
    assert "final distance (block)" in res.stdout and "5 cm goal" in res.stdout


@pytest.mark.slow
def test_push_via_ros_runs_the_in_process_episode(tmp_path):
    common = ["--task", "push", "--episodes", "1", "--max-steps", "2", "--policies", "planner", "--seed", "1002"]
    common += [
        "--samples",
        "16",
        "--iterations",
        "2",
        "--topk",
        "4",
        "--set",
        "hold_margin=-1",
        "--json",
    ]  # always move
    runs = {}
    for name, extra in (("planner", []), ("planner_ros", ["--via-ros"])):
        res = subprocess.run(
            [sys.executable, "-m", "vjepa2_ros.sim.evaluate", *common, *extra, "--out", str(tmp_path / name)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        runs[name] = json.loads((tmp_path / name / "results.json").read_text())["policies"][name]
    local, ros = (runs[k]["episodes"][0] for k in ("planner", "planner_ros"))
    assert ros["start_distance"] == pytest.approx(local["start_distance"], abs=2e-3), "same block start and goal"
    assert ros["steps"] == 2 and ros["moving_steps"] >= 1
    assert "success_rate_5cm" in runs["planner_ros"]["summary"]
