"""The planner node's parameters: what is declared, which may change at run time and within which range, and the
validated settings (`PlannerSettings`) every part of the node reads.

A new node parameter goes into `NODE_PARAMETERS` (default and description, written once), `LIVE` if it may be set
at run time (with its range), and `PlannerSettings` (its check and field); planner parameters (cem.*, safety.*,
the loop's rules) are generated from the core dataclasses (`vjepa2_core.planning.settings`), not listed here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from vjepa2_core.devices import DeviceError, check_device
from vjepa2_core.planning.controller import ClosedLoopController, ControllerConfig
from vjepa2_core.planning.safety import SafetyLimits
from vjepa2_core.planning.settings import PlanningSettings, parameter_table, planning_values, settings_from_values
from vjepa2_core.planning.world_model import DEFAULT_PRECISION, PRECISIONS
from vjepa2_ros.ros_utils import Param, ParameterError, check_range, coerce

# Per-request CEM budgets beyond these are refused (memory and time), not attempted; the AC model takes 32 frames.
MAX_BUDGET = {"horizon": 31, "samples": 100_000, "iterations": 1_000}

BUDGET = ("cem.horizon", "cem.samples", "cem.iterations")  # a live change of these is checked like a request's
NODE_PARAMETERS: dict[str, Param] = {  # the node's own settings; planner settings come from vjepa2_core below
    "autostart": Param(True, "configure and activate at start-up; false: wait for lifecycle transitions"),
    "model.checkpoint": Param("", "project checkpoint (.pt/.safetensors) for load_ac_model, or weights for hub_name"),
    "model.hub_name": Param("", "registry name (e.g. vit_ac_giant); empty = the checkpoint carries its config"),
    "model.device": Param("cpu", "torch device: cpu, cuda, cuda:0, ..."),
    "model.precision": Param(
        DEFAULT_PRECISION,
        f"matmul precision of the world model, one of {list(PRECISIONS)} (auto: bf16 on a CUDA GPU with bf16 "
        "matmuls, else fp32 (TF32 matmuls on CUDA); bf16 also pays on CPUs with AMX)",
    ),
    "model.num_threads": Param(
        0, "torch CPU threads for planning; 0 = torch's default, at most 4 (small CPUs shared with other nodes: 1)"
    ),
    "model.image_size": Param(0, "crop size the encoder sees (pixels, multiple of 16); 0 = the model's img_size"),
    "control_rate": Param(2.0, "closed-loop steps per second at most (Hz); also the period of ~/ee_twist"),
    "watchdog.rate": Param(0.0, "Hz at which ~/ee_twist is republished while a step is in flight; 0 = once per step"),
    "watchdog.timeout": Param(
        0.0, "seconds after the last command when ~/ee_twist drops to zero (watchdog on); 0 = one control period"
    ),
    "frame_id": Param("", "frame of published poses; empty = the end-effector pose's frame"),
    "camera_transport": Param("raw", "raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage)"),
    "topics.camera": Param("camera/image_raw", "camera topic"),
    "topics.ee_pose": Param("ee_pose", "end-effector pose topic (PoseStamped)"),
    "topics.gripper": Param("gripper", "gripper closedness topic (Float64 0..1); empty = no gripper (0)"),
    "topics.goal_image": Param("~/goal_image", "goal image topic (Image), used when a request has none"),
    "topics.ee_target": Param("~/ee_target", "commanded end-effector pose (PoseStamped)"),
    "topics.ee_twist": Param("~/ee_twist", "commanded end-effector velocity (TwistStamped)"),
    "topics.gripper_command": Param("~/gripper_command", "commanded gripper closedness (Float64)"),
}
# Settable at run time (`ros2 param set`), with the range `ros2 param describe` shows; every change is validated
# by the set-parameters callback like a start-up value, and while a goal is active safety.* may only tighten.
LIVE: dict[str, tuple[float, float] | None] = {
    "cem.horizon": (1, MAX_BUDGET["horizon"]),
    "cem.samples": (2, MAX_BUDGET["samples"]),
    "cem.iterations": (1, MAX_BUDGET["iterations"]),
    "cem.topk": (2, MAX_BUDGET["samples"]),
    "control_rate": (0.1, 100.0),
    "energy_threshold": (0.0, 1.0e6),
    "max_steps": (1, 1_000_000),
    "safety.max_translation": (1e-4, 1.0),
    "safety.max_rotation": (1e-4, math.pi),
    "safety.max_gripper_step": (1e-3, 1.0),
    "safety.stale_timeout": (0.01, 60.0),
    "safety.plan_deadline": (0.01, 3600.0),
    "safety.workspace_min": None,
    "safety.workspace_max": None,
}
# cem.* (CEMConfig), safety.* (SafetyLimits) and the loop rules (ControllerConfig): generated, defaults written once.
PARAMETERS: dict[str, Param] = {
    name: Param(p.default, p.description, name in LIVE, LIVE.get(name))
    for name, p in {
        **NODE_PARAMETERS,
        **{name: Param(default, doc) for name, (default, doc) in parameter_table().items()},
    }.items()
}
# A limit that is larger is looser (all but the workspace box, which is looser when it grows).
_LOOSER_WHEN_LARGER = ("max_translation", "max_rotation", "max_gripper_step", "stale_timeout", "plan_deadline")


def loosened_limits(old: SafetyLimits, new: SafetyLimits) -> list[str]:
    """The safety limits that `new` relaxes compared with `old` (refused while a goal is active)."""
    looser = [f"safety.{name}" for name in _LOOSER_WHEN_LARGER if getattr(new, name) > getattr(old, name)]
    if any(n < o for n, o in zip(new.workspace_min, old.workspace_min)):
        looser.append("safety.workspace_min")
    if any(n > o for n, o in zip(new.workspace_max, old.workspace_max)):
        looser.append("safety.workspace_max")
    return looser


@dataclass(frozen=True)
class PlannerSettings:
    """Validated node parameters: the node's own plus the planner settings shared with vjepa2-sim-eval."""

    autostart: bool
    checkpoint: str
    hub_name: str
    device: str
    precision: str
    num_threads: int
    image_size: int
    control_rate: float
    watchdog_rate: float
    watchdog_timeout: float
    frame_id: str
    camera_transport: str
    topics: dict[str, str]
    planning: PlanningSettings

    @property
    def limits(self) -> SafetyLimits:
        return self.planning.limits

    @property
    def rules(self) -> ControllerConfig:
        return self.planning.rules

    @classmethod
    def from_values(cls, v: dict[str, Any]) -> PlannerSettings:
        if not v["control_rate"] > 0:
            raise ParameterError(f"parameter 'control_rate' must be > 0, got {v['control_rate']!r}")
        for name in ("watchdog.rate", "watchdog.timeout"):
            if not (math.isfinite(v[name]) and v[name] >= 0):
                raise ParameterError(f"parameter '{name}' must be a finite number >= 0, got {v[name]!r}")
        if v["model.image_size"] < 0 or v["model.image_size"] % 16:
            raise ParameterError(
                f"parameter 'model.image_size' must be 0 or a multiple of 16, got {v['model.image_size']}"
            )
        if v["camera_transport"] not in ("raw", "compressed"):
            raise ParameterError(
                f"parameter 'camera_transport' must be raw or compressed, got {v['camera_transport']!r}"
            )
        if v["model.precision"] not in PRECISIONS:
            raise ParameterError(f"parameter 'model.precision' must be one of {list(PRECISIONS)}")
        if v["model.num_threads"] < 0:
            raise ParameterError(f"parameter 'model.num_threads' must be >= 0, got {v['model.num_threads']}")
        if not v["model.checkpoint"] and not v["model.hub_name"]:
            raise ParameterError("set 'model.checkpoint' (a project checkpoint) and/or 'model.hub_name'")
        device = v["model.device"]
        try:
            check_device(device)
        except DeviceError as exc:
            raise ParameterError(f"parameter 'model.device': {exc}") from None
        topics = {k.split(".", 1)[1]: val for k, val in v.items() if k.startswith("topics.")}
        for key, name in topics.items():
            if not name and key != "gripper":
                raise ParameterError(f"parameter 'topics.{key}' must not be empty")
        try:
            planning = settings_from_values(planning_values(v))
        except ValueError as exc:
            raise ParameterError(f"invalid planner parameters: {exc}") from None
        return cls(
            autostart=v["autostart"],
            checkpoint=v["model.checkpoint"],
            hub_name=v["model.hub_name"],
            device=device,
            precision=v["model.precision"],
            num_threads=v["model.num_threads"],
            image_size=v["model.image_size"],
            control_rate=v["control_rate"],
            watchdog_rate=v["watchdog.rate"],
            watchdog_timeout=v["watchdog.timeout"] or 1.0 / v["control_rate"],
            frame_id=v["frame_id"],
            camera_transport=v["camera_transport"],
            topics=topics,
            planning=planning,
        )


def load_controller(settings: PlannerSettings) -> ClosedLoopController:
    """Load the world model the settings name and wrap it in the closed-loop controller (the one model owner)."""
    from vjepa2_core.planning.world_model import WorldModel

    source, weights = (
        (settings.hub_name, settings.checkpoint or None) if settings.hub_name else (settings.checkpoint, None)
    )
    world_model = WorldModel.from_checkpoint(
        source,
        checkpoint=weights,
        device=settings.device,
        crop_size=settings.image_size or None,
        precision=settings.precision,
    )
    p = settings.planning
    return ClosedLoopController(world_model, p.cem, p.limits, p.rules)


def changed_settings(
    settings: PlannerSettings, params: Iterable[Any], value_of: Callable[[str], Any], goal_active: bool
) -> tuple[PlannerSettings, dict[str, Any]]:
    """The settings after a live change of `params` (rclpy Parameters; `value_of(name)` gives a parameter's current
    value), checked like start-up values: range, type, consistency, and while a goal is active safety limits may
    only tighten. Returns the new settings and the changed values ({} when no live parameter changed); raises
    ParameterError."""
    changes = {p.name: coerce(p.name, p.value, PARAMETERS[p.name].default) for p in params if p.name in LIVE}
    if not changes:
        return settings, {}
    for name, value in changes.items():
        check_range(name, value, LIVE[name])
    values = {name: coerce(name, value_of(name), PARAMETERS[name].default) for name in PARAMETERS}
    new = PlannerSettings.from_values({**values, **changes})
    looser = loosened_limits(settings.limits, new.limits) if goal_active else []
    if looser:
        raise ParameterError(f"a goal is active: safety limits may only be tightened ({', '.join(looser)})")
    return new, changes
