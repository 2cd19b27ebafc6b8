"""ROS message <-> numpy conversions for the planner: camera images, end-effector poses, actions, paths.

Poses are V-JEPA 2-AC states [x y z roll pitch yaw gripper] (euler 'xyz', radians); quaternion and composition
math comes from `vjepa2_core.planning.poses` and pixel decoding from `vjepa2_core.data.images`, so the node, the
rosbag tools and the simulator agree on every convention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseStamped, TwistStamped
from nav_msgs.msg import Path
from sensor_msgs.msg import CompressedImage, Image

from vjepa2_core.data.images import (
    ImageDecodeError,
    decode_compressed,
    decode_image,
    encode_compressed,
    encode_image,
)
from vjepa2_core.planning.poses import compose_pose, euler_to_quat, quat_to_euler

__all__ = [
    "ImageDecodeError",
    "image_to_rgb",
    "compressed_to_rgb",
    "rgb_to_image",
    "rgb_to_compressed",
    "is_empty_image",
    "pose_to_state",
    "state_to_pose",
    "state_to_pose_stamped",
    "compose",
    "action_to_twist",
    "plan_to_path",
]


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> RGB uint8 [H,W,3]; raises ImageDecodeError on a malformed message."""
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian))


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> RGB uint8 [H,W,3]; raises ImageDecodeError."""
    return decode_compressed(msg.format, msg.data)


def is_empty_image(msg: Image) -> bool:
    """An all-default Image (no size, no data) means "not given" in service and action requests."""
    return msg.height == 0 and msg.width == 0 and len(msg.data) == 0


def rgb_to_image(rgb: np.ndarray, encoding: str = "rgb8", stamp: Time | None = None, frame_id: str = "") -> Image:
    """RGB uint8 [H,W,3] -> sensor_msgs/Image in an 8-bit encoding."""
    height, width, step, data = encode_image(rgb, encoding)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0, step=step)
    msg.data = data
    msg.header.frame_id = frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    return msg


def rgb_to_compressed(
    rgb: np.ndarray, fmt: str = "jpeg", stamp: Time | None = None, frame_id: str = ""
) -> CompressedImage:
    """RGB uint8 [H,W,3] -> sensor_msgs/CompressedImage (jpeg or png)."""
    msg = CompressedImage(format=fmt)
    msg.data = encode_compressed(rgb, fmt)
    msg.header.frame_id = frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    return msg


def pose_to_state(pose: Pose, gripper: float) -> np.ndarray:
    """geometry_msgs/Pose + gripper closedness -> state [7] float64 (quaternion need not be normalised)."""
    q = np.array([pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w], np.float64)
    norm = float(np.linalg.norm(q))
    if not math.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"pose orientation is not a valid quaternion: {q.tolist()}")
    euler = quat_to_euler(torch.from_numpy(q / norm)).numpy()
    p = pose.position
    return np.array([p.x, p.y, p.z, *euler, gripper], dtype=np.float64)


def state_to_pose(state: Sequence[float] | np.ndarray) -> Pose:
    """State [7] -> geometry_msgs/Pose (the gripper value is not part of a pose)."""
    s = np.asarray(state, dtype=np.float64).reshape(-1)
    if s.shape != (7,):
        raise ValueError(f"state must have 7 values, got {s.shape}")
    q = euler_to_quat(torch.from_numpy(s[3:6].copy())).numpy()
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in s[:3])
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in q)
    return pose


def state_to_pose_stamped(state: Sequence[float] | np.ndarray, frame_id: str, stamp: Time) -> PoseStamped:
    msg = PoseStamped(pose=state_to_pose(state))
    msg.header.frame_id = frame_id
    msg.header.stamp = stamp
    return msg


def compose(state: Sequence[float] | np.ndarray, action: Sequence[float] | np.ndarray) -> np.ndarray:
    """Target state after one delta action (the planner's own pose model), float64 [7]."""
    s = torch.as_tensor(np.asarray(state, np.float64))
    a = torch.as_tensor(np.asarray(action, np.float64))
    return compose_pose(s, a).numpy()


def _rotation_vector(euler: np.ndarray) -> np.ndarray:
    """Euler 'xyz' delta -> axis * angle (the rotation as an angular displacement in the base frame)."""
    x, y, z, w = euler_to_quat(torch.from_numpy(np.asarray(euler, np.float64).copy())).numpy()
    if w < 0:
        x, y, z, w = -x, -y, -z, -w
    vec_norm = math.sqrt(x * x + y * y + z * z)
    if vec_norm < 1e-12:
        return np.zeros(3)
    angle = 2.0 * math.atan2(vec_norm, w)
    return np.array([x, y, z]) * (angle / vec_norm)


def action_to_twist(action: Sequence[float] | np.ndarray, period: float, frame_id: str, stamp: Time) -> TwistStamped:
    """Delta action -> velocity that performs it over one control period (linear m/s, angular rad/s, base frame)."""
    if not period > 0:
        raise ValueError(f"control period must be > 0, got {period}")
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    msg = TwistStamped()
    msg.header.frame_id = frame_id
    msg.header.stamp = stamp
    lin = a[:3] / period
    ang = _rotation_vector(a[3:6]) / period
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(v) for v in lin)
    msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = (float(v) for v in ang)
    return msg


def plan_to_path(state: Sequence[float] | np.ndarray, actions: np.ndarray, frame_id: str, stamp: Time) -> Path:
    """Current state and planned actions [H,7] -> nav_msgs/Path of the H+1 poses the plan passes through."""
    path = Path()
    path.header.frame_id = frame_id
    path.header.stamp = stamp
    current = np.asarray(state, dtype=np.float64)
    path.poses.append(state_to_pose_stamped(current, frame_id, stamp))
    for action in np.asarray(actions, dtype=np.float64).reshape(-1, 7):
        current = compose(current, action)
        path.poses.append(state_to_pose_stamped(current, frame_id, stamp))
    return path
