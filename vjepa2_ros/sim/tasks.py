"""The simulator's tasks, registered in one place: what `env`, `collect`, `evaluate`, the scene probe, `via_ros`,
the simulator node and the demo read about a task.

A task names its gym scene and scene kind (what `FetchSim` builds: the grip alone, a block pushed on the table, a
block grasped and carried), its camera, its start-and-goal sampler and goal rendering (the kind's), its scripted
demonstrator (an oracle on true positions: the upper baseline and the source of demonstration frames), its success
rule, its shipped model and planner params, and the exploration mix for collection. Adding a task that is a
variant of a kind (another camera, block, threshold, mix, model) is one `register(SimTask(...))` here, or in a
module of the user's own named in `VJEPA2_SIM_TASKS` (comma-separated module names, imported after the built-in
tasks, so that the simulator and planner node processes of the demo and `--via-ros` know the task too).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vjepa2_ros.sim.paths import (
    SHIPPED_MODEL,
    SHIPPED_PICK_MODEL,
    SHIPPED_PUSH_MODEL,
    SIM_PICK_PLANNER_PARAMS,
    SIM_PLANNER_PARAMS,
    SIM_PUSH_PLANNER_PARAMS,
)

KINDS = ("reach", "push", "pick_and_place")  # the scenes FetchSim builds (start/goal sampler, goal rendering)
SEGMENT_KINDS = ("waypoint", "jitter", "hold", "push", "pick")  # collection segments (vjepa2_ros.sim.collect)
SUCCESS_3CM, SUCCESS_5CM = 0.03, 0.05  # every summary reports both (the same keys and thresholds in every tool)


@dataclass(frozen=True)
class SimTask:
    """One task of the simulator. `demonstrator(sim)` -> 7-D action; `success_m`: the task's own threshold (grip
    for reach, block otherwise); `exploration`: collection segment kind -> probability."""

    name: str
    kind: str
    gym_id: str
    camera: dict[str, Any]
    demonstrator: Callable[[Any], np.ndarray]
    success_m: float
    model: Path
    params: Path
    exploration: dict[str, float] = field(default_factory=dict)
    subgoals: int = 0  # K demonstration frames the tools give the planner by default (the protocol: 0, 1 or 2)

    @property
    def has_block(self) -> bool:
        return self.kind != "reach"

    @property
    def gripper_in_action(self) -> bool:
        """The gripper is planned and moved (random actions and probe candidates include it)."""
        return self.kind == "pick_and_place"

    @property
    def what(self) -> str:
        """What the distance to the goal measures."""
        return "block" if self.has_block else "grip"

    def segment_probs(self) -> np.ndarray:
        probs = np.array([float(self.exploration.get(k, 0.0)) for k in SEGMENT_KINDS])
        return probs / probs.sum()


class TaskError(ValueError):
    """An unknown task name or a malformed task."""


_REGISTRY: dict[str, SimTask] = {}


def register(task: SimTask, replace: bool = False) -> SimTask:
    """Add a task (an existing name only with `replace`); checks what every tool relies on."""
    if task.name in _REGISTRY and not replace:
        raise TaskError(f"task {task.name!r} is already registered")
    if task.kind not in KINDS:
        raise TaskError(f"task {task.name!r}: kind must be one of {KINDS}, got {task.kind!r}")
    unknown = sorted(set(task.exploration) - set(SEGMENT_KINDS))
    if unknown or not task.exploration or min(task.exploration.values()) < 0:
        raise TaskError(f"task {task.name!r}: exploration needs weights >= 0 over {SEGMENT_KINDS}, got {unknown}")
    needs = {"push": "push", "pick": "pick_and_place"}  # segments that drive the block need their kind's scene
    wrong = [k for k, kind in needs.items() if task.exploration.get(k, 0) > 0 and task.kind != kind]
    if wrong:
        raise TaskError(
            f"task {task.name!r}: exploration segments {wrong} need a scene of their kind, not {task.kind}"
        )
    if not task.success_m > 0 or "lookat" not in task.camera or not 0 <= task.subgoals <= 2:
        raise TaskError(f"task {task.name!r}: needs success_m > 0, a camera with a lookat, subgoals in 0..2")
    _REGISTRY[task.name] = task
    return task


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def get_task(name: str) -> SimTask:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise TaskError(f"unknown task {name!r}; choose one of {task_names()}") from None


def task_names() -> list[str]:
    return sorted(_REGISTRY)


def _register_builtin() -> None:
    from vjepa2_ros.sim.env import scripted_pick_action, scripted_push_action, scripted_reach_action

    # reach: a steep view from the side opposite the robot's reach: a 3 cm move in any direction changes the 64 px
    # image; the old oblique view hid moves along its ray (see the model card)
    register(SimTask(
        name="reach", kind="reach", gym_id="FetchReach-v4",
        camera={"lookat": [1.26, 0.75, 0.52], "distance": 1.3, "azimuth": 270.0, "elevation": -75.0},
        demonstrator=scripted_reach_action, success_m=SUCCESS_3CM,
        model=SHIPPED_MODEL, params=SIM_PLANNER_PARAMS,
        exploration={"waypoint": 0.55, "jitter": 0.35, "hold": 0.10},
    ))  # fmt: skip
    # push: a view from the table's far edge that covers the push workspace, MuJoCo's 45 degree lens (PUSH_SCENE.md)
    register(SimTask(
        name="push", kind="push", gym_id="FetchPush-v4",
        camera={"lookat": [1.30, 0.75, 0.42], "distance": 0.8, "azimuth": 180.0, "elevation": -70.0},
        demonstrator=scripted_push_action, success_m=SUCCESS_5CM,
        model=SHIPPED_PUSH_MODEL, params=SIM_PUSH_PLANNER_PARAMS,
        exploration={"waypoint": 0.20, "jitter": 0.15, "hold": 0.05, "push": 0.60}, subgoals=2,
    ))  # fmt: skip
    # pick_and_place: an oblique view from the table's far edge, so that height shows (PICK_PLACE_SCENE.md)
    register(SimTask(
        name="pick_and_place", kind="pick_and_place", gym_id="FetchPickAndPlace-v4",
        camera={"lookat": [1.30, 0.75, 0.50], "distance": 0.8, "azimuth": 180.0, "elevation": -45.0},
        demonstrator=scripted_pick_action, success_m=SUCCESS_5CM,
        model=SHIPPED_PICK_MODEL, params=SIM_PICK_PLANNER_PARAMS,
        exploration={"waypoint": 0.15, "jitter": 0.10, "hold": 0.05, "pick": 0.70}, subgoals=2,
    ))  # fmt: skip


def _register_plugins() -> None:
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise TaskError(f"{PLUGINS_ENV}: cannot import task module {module!r}: {exc}") from exc


PLUGINS_ENV = "VJEPA2_SIM_TASKS"
_register_builtin()
_register_plugins()
