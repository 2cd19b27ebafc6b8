"""rosbags message objects <-> numpy: images, end-effector poses, gripper values and action vectors.

The state layout is the one the AC predictor uses: [x, y, z, euler 'xyz' (rad), gripper].
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vjepa2_core.data.images import decode_compressed, decode_image, encode_compressed, encode_image
from vjepa2_core.planning.poses import euler_to_quat, quat_to_euler
from vjepa2_ros.bags.reader import TYPESTORE, BagError

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
POSE = "geometry_msgs/msg/PoseStamped"
FLOAT64 = "std_msgs/msg/Float64"
FLOAT32 = "std_msgs/msg/Float32"
FLOAT64_ARRAY = "std_msgs/msg/Float64MultiArray"
FLOAT32_ARRAY = "std_msgs/msg/Float32MultiArray"
IMAGE_TYPES = (IMAGE, COMPRESSED)
SCALAR_TYPES = (FLOAT64, FLOAT32)
ARRAY_TYPES = (FLOAT64_ARRAY, FLOAT32_ARRAY)


def check_type(topic: str, msgtype: str, allowed: tuple[str, ...]) -> None:
    if msgtype not in allowed:
        raise BagError(f"topic {topic!r} has type {msgtype}, expected one of: {', '.join(allowed)}")


def stamp_ns(msg: Any) -> int | None:
    """Header stamp in ns, or None for header-less messages."""
    header = getattr(msg, "header", None)
    if header is None:
        return None
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def decode_image_msg(msg: Any, msgtype: str) -> np.ndarray:
    """Image / CompressedImage -> RGB uint8 [H,W,3] (raises ImageDecodeError for unsupported encodings)."""
    if msgtype == IMAGE:
        return decode_image(msg.encoding, int(msg.height), int(msg.width), int(msg.step), bytes(msg.data))
    return decode_compressed(msg.format, bytes(msg.data))


def pose_to_array(msg: Any) -> np.ndarray:
    """PoseStamped -> [x, y, z, euler xyz] float64 [6]."""
    p, q = msg.pose.position, msg.pose.orientation
    quat = torch.tensor([q.x, q.y, q.z, q.w], dtype=torch.float64)
    norm = float(quat.norm())
    if not np.isfinite(norm) or norm < 1e-6:
        raise ValueError(f"invalid orientation quaternion {quat.tolist()}")
    euler = quat_to_euler(quat / norm).numpy()
    return np.array([p.x, p.y, p.z, *euler], dtype=np.float64)


def scalar_value(msg: Any) -> float:
    return float(msg.data)


def array_value(msg: Any, size: int = 7) -> np.ndarray:
    data = np.asarray(msg.data, dtype=np.float64)
    if data.shape != (size,):
        raise ValueError(f"expected {size} values, got {data.shape[0]}")
    return data


# ----------------------------------------------------------------------------------------- building messages


def _header(stamp: int, frame_id: str) -> Any:
    t = TYPESTORE.types
    return t["std_msgs/msg/Header"](
        stamp=t["builtin_interfaces/msg/Time"](sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000),
        frame_id=frame_id,
    )


def image_msg(frame: np.ndarray, stamp: int, fmt: str = "rgb8", frame_id: str = "camera") -> tuple[Any, str]:
    """RGB uint8 [H,W,3] -> (message, msgtype): CompressedImage for 'jpeg'/'png', else a raw Image in that encoding."""
    t = TYPESTORE.types
    if fmt in ("jpeg", "png"):
        data = np.frombuffer(encode_compressed(frame, fmt), dtype=np.uint8)
        return t[COMPRESSED](header=_header(stamp, frame_id), format=fmt, data=data), COMPRESSED
    h, w, step, raw = encode_image(frame, fmt)
    msg = t[IMAGE](
        header=_header(stamp, frame_id),
        height=h,
        width=w,
        encoding=fmt,
        is_bigendian=0,
        step=step,
        data=np.frombuffer(raw, dtype=np.uint8),
    )
    return msg, IMAGE


def pose_msg(pose6: np.ndarray, stamp: int, frame_id: str = "base") -> Any:
    """[x, y, z, euler xyz] -> PoseStamped."""
    t = TYPESTORE.types
    x, y, z, w = euler_to_quat(torch.as_tensor(np.asarray(pose6[3:6], dtype=np.float64))).tolist()
    pose = t["geometry_msgs/msg/Pose"](
        position=t["geometry_msgs/msg/Point"](x=float(pose6[0]), y=float(pose6[1]), z=float(pose6[2])),
        orientation=t["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w),
    )
    return t[POSE](header=_header(stamp, frame_id), pose=pose)


def float_msg(value: float) -> Any:
    return TYPESTORE.types[FLOAT64](data=float(value))


def array_msg(values: np.ndarray) -> Any:
    t = TYPESTORE.types
    layout = t["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
    return t[FLOAT64_ARRAY](layout=layout, data=np.asarray(values, dtype=np.float64))


def serialize(msg: Any, msgtype: str) -> bytes:
    return bytes(TYPESTORE.serialize_cdr(msg, msgtype))
