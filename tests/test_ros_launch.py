"""launch/planner.launch.py through the launch system: it parses, names real entry points and files, and every
argument it declares reaches the node.

The file is loaded as `ros2 launch` loads it (`get_launch_description_from_python_launch_file`); the node's
arguments are evaluated in a launch context whose configurations are marker values, without starting anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from launch import LaunchContext
from launch.launch_description_sources import get_launch_description_from_python_launch_file
from launch.substitutions import PathJoinSubstitution
from launch.utilities import perform_substitutions
from launch_ros.actions import Node

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "planner.launch.py"


@pytest.fixture(scope="module")
def description():
    return get_launch_description_from_python_launch_file(str(LAUNCH_FILE))


def text(substitutions) -> str:
    """The literal text of a list of text substitutions (a package name, a path part)."""
    return "".join(sub.text for sub in substitutions)


def node_arguments(node: Node, values: dict[str, str]) -> str:
    """Everything `node` passes to its process (namespace, remappings, parameters and the contents of its parameter
    files) with the launch configurations set to `values`."""
    context = LaunchContext()
    context.launch_configurations.update(values)
    node._perform_substitutions(context)  # what Node.execute does before it starts the process
    parts = [node.expanded_node_namespace]
    for part in node.cmd[1:]:  # [0] is the executable, found through the ament index
        try:
            parts.append(perform_substitutions(context, part))
        except Exception:  # noqa: BLE001  ros-specific arguments only filled in at execute (name, namespace)
            continue
    files = [Path(after) for flag, after in zip(parts, parts[1:]) if flag == "--params-file"]
    return "\n".join(parts + [f.read_text() for f in files if f.is_file()])


def console_scripts() -> set[str]:
    """Entry-point names declared in setup.py (read with ast: setup.py is not importable without running setup)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    return {ast.literal_eval(v).split("=")[0].strip() for v in value.elts}
    raise AssertionError("no console_scripts in setup.py")


def share_path(sub: PathJoinSubstitution) -> Path:
    """PathJoinSubstitution([FindPackageShare('vjepa2_ros'), 'config', 'x.yaml']) -> the file in this repo."""
    parts = list(sub.substitutions)
    assert type(parts[0]).__name__ == "FindPackageShare" and text(parts[0].package) == "vjepa2_ros"
    return REPO.joinpath(*(text([part]) for part in parts[1:]))


def test_launch_file_parses_as_python():
    ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))


def test_every_executable_is_a_console_entry_point(description):
    nodes = [e for e in description.entities if isinstance(e, Node)]
    assert nodes, "the launch file starts no node"
    scripts = console_scripts()
    for node in nodes:
        assert node.node_package == "vjepa2_ros"
        assert node.node_executable in scripts, f"{node.node_executable} is not in setup.py"


def test_every_named_file_exists_and_is_installed(description):
    defaults = [a.default_value for a in description.get_launch_arguments()]
    files = [share_path(v[0]) for v in defaults if len(v) == 1 and isinstance(v[0], PathJoinSubstitution)]
    assert files, "expected the default params file to come from the package share directory"
    setup = (REPO / "setup.py").read_text()
    for path in files:
        assert path.is_file(), f"{path} named by the launch file does not exist"
        assert f'glob("{path.parent.relative_to(REPO)}/*{path.suffix}")' in setup, f"{path} is not installed"


def test_arguments_cover_params_topics_device_and_namespace(description, tmp_path):
    args = {a.name for a in description.get_launch_arguments()}
    assert {"params_file", "camera_topic", "ee_pose_topic", "device", "namespace"} <= args
    node = next(e for e in description.entities if isinstance(e, Node))
    values = {name: f"marker_{name}" for name in args}
    values["params_file"] = str(tmp_path / "marker_params_file.yaml")  # a parameter file must exist to be passed
    Path(values["params_file"]).write_text("{}\n")
    passed = node_arguments(node, values)
    used = {name for name in args if values[name] in passed}
    assert args <= used, f"declared but unused launch arguments: {args - used}"


@pytest.mark.parametrize("name", ["planner.yaml", "sim_planner.yaml"])
def test_params_files_list_only_known_parameters_that_differ_from_the_defaults(name):
    from vjepa2_core.planning.settings import flatten
    from vjepa2_ros.planner_node import PARAMETERS

    data = yaml.safe_load((REPO / "config" / name).read_text())
    values = flatten(data["/**"]["ros__parameters"])
    unknown = set(values) - set(PARAMETERS)
    assert not unknown, f"config/{name} names unknown parameters {sorted(unknown)}"
    for key, value in values.items():
        default = PARAMETERS[key].default
        assert value != default, f"config/{name} {key}={value!r} repeats the default (defaults live in one place)"
