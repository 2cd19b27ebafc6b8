"""Simulated-arm demo on a full ROS 2 install: `ros2 launch vjepa2_ros demo.launch.py [task:=push] [seed:=3]`.

Starts vjepa2_sim and vjepa2_planner (topics wired by config/sim_planner.yaml, or sim_push_planner.yaml for
task:=push, with the task's shipped model) and the demo client, which sends the sim's goal image (push: after the
sim oracle's sub-goal images) as a ReachGoal, prints each step and saves the image strip. With `client:=false` only the
sim and the planner run, to be driven from the CLI or RViz (an empty goal image means the sim's goal image):
    ros2 action send_goal /vjepa2_planner/reach_goal vjepa2_interfaces/action/ReachGoal "{max_steps: 10}" --feedback
Without `ros2 launch` (pip-only installs) `make sim-demo` does the same with plain processes.
"""

import sys

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, Shutdown
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

SHARE = FindPackageShare("vjepa2_ros")
ARGUMENTS = {
    "model": ("", "AC checkpoint for the planner (empty: the task's shipped model in vjepa2_ros/models)"),
    "seed": ("3", "start and goal of the episode"),
    "task": ("reach", "reach | push"),
    "max_steps": ("0", "ReachGoal step budget (0: the task params file's max_steps)"),
    "out": ("sim_demo", "directory for the image strip"),
    "client": ("true", "start the demo client (false: only sim and planner, drive them with ros2 action/service)"),
    "autostart": ("true", "planner configures and activates itself; false: drive its lifecycle (change_state)"),
}


def generate_launch_description() -> LaunchDescription:
    arg = LaunchConfiguration
    declared = [DeclareLaunchArgument(k, default_value=d, description=doc) for k, (d, doc) in ARGUMENTS.items()]
    sim = Node(
        package="vjepa2_ros",
        executable="vjepa2_sim",
        name="vjepa2_sim",
        parameters=[PathJoinSubstitution([SHARE, "config", "sim.yaml"]), {"seed": arg("seed"), "task": arg("task")}],
        output="screen",
    )
    planner = Node(
        package="vjepa2_ros",
        executable="vjepa2_planner",
        name="vjepa2_planner",
        parameters=[
            PathJoinSubstitution([SHARE, "config", _task_default(1, name=True)]),
            {"model.checkpoint": _model_path(), "autostart": arg("autostart")},
        ],
        output="screen",
    )
    client = ExecuteProcess(
        cmd=[sys.executable, "-m", "vjepa2_ros.sim.demo", "--no-spawn", "--max-steps", arg("max_steps")]
        + ["--task", arg("task"), "--out", arg("out")],
        output="screen",
        on_exit=Shutdown(reason="demo finished"),
        condition=IfCondition(arg("client")),
    )
    return LaunchDescription([*declared, sim, planner, client])


def _task_default(index: int, name: bool = False) -> PythonExpression:
    """The task's shipped model (index 0) or params file (1) from vjepa2_ros.sim.tasks, as a path or file name."""
    tasks = "__import__('vjepa2_ros.sim.tasks', fromlist=['x']).get_task"
    part = ("model", "params")[index] + (".name" if name else ".as_posix()")
    return PythonExpression([f"{tasks}('", LaunchConfiguration("task"), f"').{part}"])


def _model_path() -> PythonExpression:
    """The `model` argument, or the task's shipped model path when it is empty."""
    return PythonExpression(["'", LaunchConfiguration("model"), "' or '", _task_default(0), "'"])
