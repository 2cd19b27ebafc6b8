"""Which LeRobot columns hold the end-effector pose and the gripper, and how they become our 7-D state.

Our state is (x, y, z, Euler 'xyz' extrinsic roll/pitch/yaw, gripper closedness 0..1), the DROID convention. The
defaults read the DROID port (`lerobot/droid_1.0.1`) and LeRobot datasets written with its key names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from vjepa2_core.data.droid import DROIDDataError
from vjepa2_core.data.lerobot.config import (
    DEFAULT_GRIPPER_INDEX,
    DEFAULT_GRIPPER_RANGE,
    DEFAULT_ROTATION,
    GRIPPER_KEY,
    POSE_KEY,
    ROTATIONS,
)
from vjepa2_core.planning.poses import quat_to_euler

IMAGE_PREFIX = "observation.images."
DROID_VIEW_SUFFIX = "_mp4_path"


def view_name(view: str) -> str:
    """The LeRobot camera name of a view: a DROID metadata key loses its suffix (`left_mp4_path` -> `left`)."""
    return view.removesuffix(DROID_VIEW_SUFFIX)


class LeRobotError(DROIDDataError):
    """A LeRobot dataset, episode or key that cannot be used (with the file and the key); the clip dataset skips
    and counts an episode that raises it, as it does a broken DROID episode."""


@dataclass(frozen=True)
class KeyMapping:
    """`data.lerobot` in the training configs: where the pose and the gripper are, and their conventions."""

    pose_key: str = POSE_KEY
    rotation: str = DEFAULT_ROTATION  # euler_xyz (scipy 'xyz' extrinsic), quat_xyzw or quat_wxyz
    gripper_key: str = GRIPPER_KEY
    gripper_index: int = DEFAULT_GRIPPER_INDEX  # element of a vector column (e.g. the gripper joint of a joint vector)
    gripper_range: tuple[float, float] = DEFAULT_GRIPPER_RANGE  # raw (open, closed) -> 0..1

    def __post_init__(self) -> None:
        if self.rotation not in ROTATIONS:
            raise LeRobotError(f"data.lerobot.rotation: {self.rotation!r} is not one of {list(ROTATIONS)}")
        if len(self.gripper_range) != 2 or float(self.gripper_range[0]) == float(self.gripper_range[1]):
            raise LeRobotError(f"data.lerobot.gripper_range: needs two different values [open, closed], got "
                               f"{list(self.gripper_range)}")  # fmt: skip
        lo, hi = (float(v) for v in self.gripper_range)
        if self.gripper_index < 0:
            raise LeRobotError(f"data.lerobot.gripper_index: must be >= 0, got {self.gripper_index}")
        object.__setattr__(self, "gripper_range", (lo, hi))

    @classmethod
    def from_config(cls, section: dict | None) -> KeyMapping:
        section = dict(section or {})
        if "gripper_range" in section:
            section["gripper_range"] = tuple(section["gripper_range"])
        return cls(**section)

    @property
    def pose_width(self) -> int:
        return ROTATIONS[self.rotation]

    def check_features(self, features: dict, where: Path) -> None:
        """Fail at start-up, naming info.json and the key, when the mapped keys are missing or the wrong size."""
        for key, width in ((self.pose_key, self.pose_width), (self.gripper_key, self.gripper_index + 1)):
            if key not in features:
                numeric = [k for k, f in features.items() if f.get("dtype") not in ("video", "image", "string")]
                raise LeRobotError(f"{where}: no feature {key!r} (numeric features: {numeric})")
            size = int(np.prod(features[key].get("shape", [1])))
            if key == self.pose_key and size != width:
                raise LeRobotError(f"{where}: {key!r} has shape {features[key].get('shape')}, rotation "
                                   f"{self.rotation!r} needs {width} values (xyz + rotation)")  # fmt: skip
            if key == self.gripper_key and size < width:
                raise LeRobotError(
                    f"{where}: {key!r} has {size} values, gripper_index {self.gripper_index} is outside"
                )

    def to_states(self, pose: np.ndarray, gripper: np.ndarray, where: Path) -> np.ndarray:
        """float64 [T,7] states from a pose column [T,6|7] and a gripper column [T,k]."""
        if pose.shape[1] != self.pose_width:
            raise LeRobotError(
                f"{where}: column {self.pose_key!r} has width {pose.shape[1]}, expected {self.pose_width}"
            )
        if gripper.shape[1] <= self.gripper_index:
            raise LeRobotError(f"{where}: column {self.gripper_key!r} has width {gripper.shape[1]}, "
                               f"gripper_index {self.gripper_index} is outside")  # fmt: skip
        rot = pose[:, 3:]
        if self.rotation != "euler_xyz":  # Euler angles do not depend on the quaternion's sign: flips are harmless
            quat = rot if self.rotation == "quat_xyzw" else rot[:, [1, 2, 3, 0]]
            norm = np.linalg.norm(quat, axis=1, keepdims=True)
            if (norm < 1e-6).any():
                raise LeRobotError(f"{where}: column {self.pose_key!r} holds a zero quaternion")
            rot = quat_to_euler(torch.as_tensor(quat / norm, dtype=torch.float64)).numpy()
        open_, closed = self.gripper_range
        grip = np.clip((gripper[:, self.gripper_index] - open_) / (closed - open_), 0.0, 1.0)
        states = np.concatenate([pose[:, :3], rot, grip[:, None]], axis=1)
        if not np.isfinite(states).all():
            raise LeRobotError(f"{where}: non-finite values in {self.pose_key!r} or {self.gripper_key!r}")
        return states


def column_array(table: pa.Table, key: str, where: Path) -> np.ndarray:
    """float64 [T,k] from a scalar (k=1), fixed-size-list or list column."""
    col = table.column(key).combine_chunks()
    kind = col.type
    try:
        if pa.types.is_fixed_size_list(kind):
            return np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float64).reshape(
                len(col), kind.list_size
            )
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            return np.stack([np.asarray(v, np.float64) for v in col.to_pylist()])
        return np.asarray(col.to_numpy(zero_copy_only=False), np.float64).reshape(-1, 1)
    except (ValueError, TypeError, pa.ArrowException) as e:
        raise LeRobotError(f"{where}: column {key!r} of type {kind} is not numeric ({e})") from e
