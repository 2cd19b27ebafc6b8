"""The README's colcon route and the real `ros2 launch` / `ros2` CLI, as a robotics user drives the packages.

`scripts/colcon_build.sh` builds vjepa2_interfaces and vjepa2_ros with colcon into build/colcon_ws (what
`make test` does first); every command here runs with that workspace's `install/setup.bash` sourced, so the
nodes are the installed executables that `ros2 launch` finds through the ament index, not the source tree.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from ros_helpers import wait_until

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.ros, pytest.mark.slow]
PARAM_DISCOVERY = ("--no-daemon", "--spin-time", "5")


@pytest.fixture(scope="module")
def ws_env() -> dict[str, str]:
    """The colcon workspace's sourced environment; built here unless `make test` just built it (VJEPA2_COLCON_WS)."""
    env = {**os.environ, "VENV": str(VENV_BIN.parent)}
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)  # children re-run the venv bootstrap with the new paths
    ws = Path(os.environ.get("VJEPA2_COLCON_WS", REPO / "build" / "colcon_ws"))
    if "VJEPA2_COLCON_WS" not in os.environ:
        build = subprocess.run(
            ["bash", str(REPO / "scripts/colcon_build.sh"), str(ws)], env=env, capture_output=True, text=True,
            timeout=900,
        )  # fmt: skip
        assert build.returncode == 0, build.stderr[-4000:]
        assert "ignoring unknown package" not in build.stderr, build.stderr
        assert "Summary: 2 packages finished" in build.stderr, build.stderr[-2000:]
    assert (ws / "install/setup.bash").is_file(), f"no colcon workspace at {ws}"
    dump = subprocess.run(
        ["bash", "-c", f"source {ws}/install/setup.bash && env -0"], env=env, capture_output=True, timeout=60
    )
    sourced = dict(item.split("=", 1) for item in dump.stdout.decode().split("\0") if "=" in item)
    sourced["PATH"] = f"{VENV_BIN}:{sourced['PATH']}"  # `ros2` comes from the venv (launch-tools/install.sh)
    sourced.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", RCUTILS_LOGGING_BUFFERED_STREAM="0")
    for pkg in ("vjepa2_ros", "vjepa2_interfaces"):
        assert f"{ws}/install/{pkg}" in sourced["AMENT_PREFIX_PATH"], sourced["AMENT_PREFIX_PATH"]
    return sourced


class Launch:
    """`ros2 launch ...` in its own process group, so `ctrl_c` sends SIGINT to it and its nodes like a terminal."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.start = time.monotonic()
        self.log = cwd / "launch.log"
        self._out = self.log.open("w")
        self.proc = subprocess.Popen(
            ["ros2", "launch", *args], env=env, cwd=cwd, stdout=self._out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, pattern: str, timeout: float) -> float:
        """Seconds from the launch to the first line matching `pattern` (fails with the log)."""
        ok = wait_until(lambda: re.search(pattern, self.text()) or self.proc.poll() is not None, timeout, 0.1)
        assert ok and re.search(pattern, self.text()), f"no {pattern!r} within {timeout} s:\n{self.text()[-4000:]}"
        return time.monotonic() - self.start

    def node_pid(self, executable: str) -> int:
        kids = psutil.Process(self.proc.pid).children(recursive=True)
        return next(p.pid for p in kids if any(executable in part for part in p.cmdline()))

    def ctrl_c(self, timeout: float = 30.0) -> int:
        """SIGINT to the whole group (what a terminal does; launch forwards a second one), then wait."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            raise AssertionError(
                f"ros2 launch did not exit within {timeout} s of SIGINT:\n{self.text()[-4000:]}"
            ) from None
        finally:
            self._out.close()


def ros2(env: dict[str, str], *args: str, timeout: float = 60.0) -> str:
    """Run one `ros2` CLI command; returns its stdout (fails with its output on a non-zero exit).

    Right after start-up the node list can be incomplete (discovery): a `ros2 param` that did not see the node is
    retried with a longer discovery wait (`--spin-time 5`).
    """
    cmd = ["ros2", *args, *(("--no-daemon",) if args[0] == "param" else ())]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if "Node not found" in out.stderr:
        out = subprocess.run([*cmd, *PARAM_DISCOVERY], env=env, capture_output=True, text=True, timeout=timeout)
    assert (
        out.returncode == 0
    ), f"ros2 {' '.join(args)} -> {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def test_demo_launch_without_client_is_driven_from_the_cli(ws_env, tmp_path):
    """sim + planner from `ros2 launch vjepa2_ros demo.launch.py client:=false`, then param/service/action CLI."""
    launch = Launch(["vjepa2_ros", "demo.launch.py", "client:=false"], ws_env, tmp_path)
    try:
        ready = launch.wait_for(r"vjepa2_planner ready", 120)
        launch.wait_for(r"\[vjepa2_sim\]: ready", 120)
        print(f"ros2 launch -> planner ready: {ready:.1f} s")
        started = re.findall(r"\[INFO\] \[([\w.-]+)\]: process started", launch.text())
        assert sorted(n.rsplit("-", 1)[0] for n in started) == ["vjepa2_planner", "vjepa2_sim"], started
        value = ros2(ws_env, "param", "get", "/vjepa2_planner", "cem.samples")
        assert re.search(r"value is: 100\b", value), value
        plan = ros2(
            ws_env, "service", "call", "/vjepa2_planner/plan_to_goal", "vjepa2_interfaces/srv/PlanToGoal",
            "{samples: 16, iterations: 1, seed: 3}",
        )  # fmt: skip
        assert "success=True" in plan and "horizon=1" in plan, plan
        reach = ros2(
            ws_env, "action", "send_goal", "/vjepa2_planner/reach_goal", "vjepa2_interfaces/action/ReachGoal",
            "{max_steps: 2}", timeout=120,
        )  # fmt: skip
        assert "Goal finished with status: SUCCEEDED" in reach and "steps: 2" in reach, reach
        rss = psutil.Process(launch.node_pid("vjepa2_planner")).memory_info().rss / 2**20
        print(f"planner RSS after plan + 2-step reach: {rss:.0f} MiB")
    finally:
        code = launch.ctrl_c()
    assert code == 0 and "vjepa2_planner-2]: process has finished cleanly" in launch.text(), launch.text()[-4000:]


def test_demo_launch_push_takes_the_push_model_params_and_serves_subgoals(ws_env, tmp_path):
    """`task:=push`: the planner gets the shipped push model and config/sim_push_planner.yaml (installed share),
    and the sim's ~/subgoal_images answers through the installed vjepa2_interfaces."""
    launch = Launch(["vjepa2_ros", "demo.launch.py", "client:=false", "task:=push", "seed:=1002"], ws_env, tmp_path)
    try:
        launch.wait_for(r"vjepa2_planner ready", 120)
        launch.wait_for(r"\[vjepa2_sim\]: ready: task push", 120)
        model = ros2(ws_env, "param", "get", "/vjepa2_planner", "model.checkpoint")
        assert "sim_push.safetensors" in model, model
        axis = ros2(ws_env, "param", "get", "/vjepa2_planner", "cem.axis")
        assert "z=0,gripper=0" in axis, axis
        reply = ros2(
            ws_env, "service", "call", "/vjepa2_sim/subgoal_images", "vjepa2_interfaces/srv/SubgoalImages",
            "{every: 0}", timeout=120,
        )  # fmt: skip
        assert "success=True" in reply and "2 images, the last is the goal image" in reply, reply[-2000:]
    finally:
        code = launch.ctrl_c()
    assert code == 0, launch.text()[-4000:]


@pytest.fixture(scope="module")
def tiny_params(tmp_path_factory) -> Path:
    from vjepa2_core.hub import make_random_checkpoint

    tmp = tmp_path_factory.mktemp("launch_params")
    ckpt = make_random_checkpoint(tmp / "vit_ac_tiny.pt", "vit_ac_tiny")
    params = {"/**": {"ros__parameters": {"model": {"checkpoint": str(ckpt), "num_threads": 1}}}}
    path = tmp / "planner.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_planner_launch_serves_the_cli_and_ctrl_c_exits_cleanly(ws_env, tiny_params, tmp_path):
    launch = Launch(["vjepa2_ros", "planner.launch.py", f"params_file:={tiny_params}"], ws_env, tmp_path)
    try:
        ready = launch.wait_for(r"vjepa2_planner ready", 90)
        print(f"ros2 launch planner.launch.py -> ready: {ready:.1f} s")
        assert "String value is: cpu" in ros2(ws_env, "param", "get", "/vjepa2_planner", "model.device")
        stop = ros2(ws_env, "service", "call", "/vjepa2_planner/stop", "std_srvs/srv/Trigger")
        assert "success=True" in stop, stop
        described = ros2(ws_env, "param", "describe", "/vjepa2_planner", "safety.max_translation")
        assert "Min value: 0.0001" in described and "Max value: 1.0" in described, described
        assert "Set parameter successful" in ros2(ws_env, "param", "set", "/vjepa2_planner", "control_rate", "5.0")
        refused = ["ros2", "param", "set", "/vjepa2_planner", "safety.stale_timeout", "-1.0", *PARAM_DISCOVERY]
        out = subprocess.run(refused, env=ws_env, text=True, capture_output=True, timeout=60)
        assert "Setting parameter failed" in out.stdout + out.stderr, out
    finally:
        code = launch.ctrl_c()
    log = launch.text()
    assert code == 0 and re.search(r"vjepa2_planner-1\]: process has finished cleanly", log), log[-4000:]
    assert "Traceback" not in log and "KeyboardInterrupt" not in log and "process has died" not in log, log[-4000:]


def test_unusable_device_is_a_configuration_error_not_a_traceback(ws_env, tiny_params, tmp_path):
    import torch

    count = torch.cuda.device_count() if torch.backends.cuda.is_built() else 0
    device = f"cuda:{count}" if count else "cuda"  # this machine cannot use it either way
    launch = Launch(
        ["vjepa2_ros", "planner.launch.py", f"params_file:={tiny_params}", f"device:={device}"], ws_env, tmp_path
    )
    launch.wait_for(r"process has (died|finished)", 90)
    assert launch.proc.wait(30) == 0  # ros2 launch itself always exits 0: the node's exit code is in the log
    log = launch.text()
    assert re.search(r"process has died \[pid \d+, exit code 2", log), log[-4000:]
    assert "invalid configuration: parameter 'model.device'" in log and "Traceback" not in log, log[-4000:]
