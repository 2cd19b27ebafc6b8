"""launch/planner.launch.py without launch/launch_ros installed: it parses, names real entry points and files.

Stand-in `launch` / `launch_ros` modules record what the file constructs, so the test checks the real
`generate_launch_description()` call rather than a text search.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "planner.launch.py"


class Recorded:
    """Any launch object: keeps its positional and keyword arguments."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


def _stub_modules() -> dict[str, types.ModuleType]:
    names = {
        "launch": ["LaunchDescription"],
        "launch.actions": ["DeclareLaunchArgument"],
        "launch.substitutions": ["LaunchConfiguration", "PathJoinSubstitution"],
        "launch_ros": [],
        "launch_ros.actions": ["Node"],
        "launch_ros.substitutions": ["FindPackageShare"],
    }
    modules = {}
    for module_name, classes in names.items():
        module = types.ModuleType(module_name)
        for cls in classes:
            setattr(module, cls, type(cls, (Recorded,), {}))
        modules[module_name] = module
    return modules


@pytest.fixture(scope="module")
def description():
    saved = {k: sys.modules.get(k) for k in _stub_modules()}
    sys.modules.update(_stub_modules())
    try:
        spec = importlib.util.spec_from_file_location("planner_launch", LAUNCH_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module.generate_launch_description()
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def console_scripts() -> set[str]:
    """Entry-point names declared in setup.py (read with ast: setup.py is not importable without running setup)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    return {ast.literal_eval(v).split("=")[0].strip() for v in value.elts}
    raise AssertionError("no console_scripts in setup.py")


def share_path(sub: Recorded) -> Path:
    """PathJoinSubstitution([FindPackageShare('vjepa2_ros'), 'config', 'x.yaml']) -> the file in this repo."""
    parts = sub.args[0]
    assert type(parts[0]).__name__ == "FindPackageShare" and parts[0].args == ("vjepa2_ros",)
    return REPO.joinpath(*parts[1:])


def test_launch_file_parses_as_python():
    ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))


def test_every_executable_is_a_console_entry_point(description):
    nodes = [e for e in description.args[0] if type(e).__name__ == "Node"]
    assert nodes, "the launch file starts no node"
    scripts = console_scripts()
    for node in nodes:
        assert node.kwargs["package"] == "vjepa2_ros"
        assert node.kwargs["executable"] in scripts, f"{node.kwargs['executable']} is not in setup.py"


def test_every_named_file_exists_and_is_installed(description):
    args = {a.args[0]: a.kwargs for a in description.args[0] if type(a).__name__ == "DeclareLaunchArgument"}
    files = [
        share_path(v["default_value"])
        for v in args.values()
        if type(v["default_value"]).__name__ == "PathJoinSubstitution"
    ]
    assert files, "expected the default params file to come from the package share directory"
    setup = (REPO / "setup.py").read_text()
    for path in files:
        assert path.is_file(), f"{path} named by the launch file does not exist"
        assert f'glob("{path.parent.relative_to(REPO)}/*{path.suffix}")' in setup, f"{path} is not installed"


def test_arguments_cover_params_topics_device_and_namespace(description):
    args = {a.args[0] for a in description.args[0] if type(a).__name__ == "DeclareLaunchArgument"}
    assert {"params_file", "camera_topic", "ee_pose_topic", "device", "namespace"} <= args
    node = next(e for e in description.args[0] if type(e).__name__ == "Node")
    used = {sub.args[0] for _, sub in node.kwargs["remappings"]}
    used |= {node.kwargs["namespace"].args[0]}
    used |= {p.args[0] for p in node.kwargs["parameters"] if type(p).__name__ == "LaunchConfiguration"}
    used |= {v.args[0] for p in node.kwargs["parameters"] if isinstance(p, dict) for v in p.values()}
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
