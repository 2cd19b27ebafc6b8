"""`data.format` and the `data.lerobot` key mapping of the training configs (no pyarrow/PyAV import here)."""

from __future__ import annotations

from vjepa2_core.training.config import Field

POSE_KEY = "observation.state.cartesian_position"
GRIPPER_KEY = "observation.state.gripper_position"
ROTATIONS = {"euler_xyz": 6, "quat_xyzw": 7, "quat_wxyz": 7}  # pose width: xyz + rotation
DEFAULT_ROTATION = "euler_xyz"
DEFAULT_GRIPPER_RANGE = (0.0, 1.0)
DEFAULT_GRIPPER_INDEX = 0

LEROBOT_SCHEMA = {
    "pose_key": Field(str, default=POSE_KEY, doc="[T,6] xyz + Euler 'xyz', or [T,7] xyz + quaternion"),
    "rotation": Field(str, default=DEFAULT_ROTATION, choices=tuple(ROTATIONS)),
    "gripper_key": Field(str, default=GRIPPER_KEY, doc="scalar or vector column holding the gripper"),
    "gripper_index": Field(int, default=DEFAULT_GRIPPER_INDEX, doc="element of a vector gripper_key"),
    "gripper_range": Field(list, default=list(DEFAULT_GRIPPER_RANGE), doc="raw [open, closed] -> 0..1"),
}


def format_field(default: str, choices: tuple[str, ...]) -> Field:
    return Field(str, default=default, choices=choices, doc="dataset layout; lerobot: data.datasets are dataset roots")
