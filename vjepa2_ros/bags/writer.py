"""Writing rosbag2 recordings (MCAP or sqlite3) from arrays: test data, simulated runs, converted datasets."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer

from vjepa2_ros.bags import messages as m
from vjepa2_ros.bags.reader import TYPESTORE, BagError

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
NS = 1_000_000_000


@dataclass(frozen=True)
class Topics:
    """Topic names of one robot recording (the replay and bag2droid defaults)."""

    image: str = "/camera/image_raw"
    pose: str = "/ee_pose"
    gripper: str = "/gripper"
    action: str = "/vjepa2/action"  # Float64MultiArray deltas, or PoseStamped targets (planner's ~/ee_target)
    gripper_command: str = ""  # Float64 gripper target, with PoseStamped targets (planner's ~/gripper_command)


def write_bag(
    path: str | Path,
    records: Iterable[tuple[str, int, Any, str]],
    storage: str = "mcap",
    offered_qos: dict[str, Sequence[Any]] | None = None,
) -> Path:
    """Write (topic, timestamp ns, rosbags message or CDR bytes, msgtype) records, in any order, to a new bag.

    `offered_qos` maps a topic to the rosbags `Qos` profiles its publishers offered (stored in the metadata, as a
    recorder does; `vjepa2-bag-play` replays with them)."""
    if storage not in STORAGES:
        raise BagError(f"unknown storage {storage!r}; choose from {', '.join(STORAGES)}")
    path = Path(path)
    if path.exists():
        raise BagError(f"refusing to overwrite existing bag {path}")
    records = sorted(records, key=lambda r: r[1])
    with Writer(path, version=9, storage_plugin=STORAGES[storage]) as writer:
        conns: dict[str, Any] = {}
        for topic, stamp, msg, msgtype in records:
            if topic not in conns:
                qos = (offered_qos or {}).get(topic, ())
                conns[topic] = writer.add_connection(topic, msgtype, typestore=TYPESTORE, offered_qos_profiles=qos)
            writer.write(conns[topic], stamp, msg if isinstance(msg, bytes) else m.serialize(msg, msgtype))
    return path


def trajectory_records(
    frames: np.ndarray,
    states: np.ndarray,
    actions: np.ndarray | None = None,
    rate: float = 4.0,
    topics: Topics | None = None,
    image_format: str = "rgb8",
    start_ns: int = 1_700_000_000 * NS,
    drop: dict[str, Iterable[int]] | None = None,
) -> list[tuple[str, int, Any, str]]:
    """Bag records for a trajectory sampled at `rate` Hz: frame, pose, gripper (and action) for every step.

    `drop` maps a stream name (image, pose, gripper, action) to step indices to leave out, to make gaps.
    Pose and gripper are stamped 1 ms after the frame, actions 2 ms after, as a real recorder would.
    """
    frames, states = np.asarray(frames), np.asarray(states, dtype=np.float64)
    if frames.ndim != 4 or frames.shape[-1] != 3 or states.shape != (len(frames), 7):
        raise ValueError(f"need frames [T,H,W,3] and states [T,7], got {frames.shape} and {states.shape}")
    topics = topics or Topics()
    drop = {k: set(v) for k, v in (drop or {}).items()}
    period = int(round(NS / rate))
    out = []
    for i, (frame, state) in enumerate(zip(frames, states)):
        t = start_ns + i * period
        if i not in drop.get("image", ()):
            msg, msgtype = m.image_msg(frame, t, image_format)
            out.append((topics.image, t, msg, msgtype))
        if i not in drop.get("pose", ()):
            out.append((topics.pose, t + 1_000_000, m.pose_msg(state[:6], t), m.POSE))
        if i not in drop.get("gripper", ()):
            out.append((topics.gripper, t + 1_000_000, m.float_msg(state[6]), m.FLOAT64))
        if actions is not None and i < len(actions) and i not in drop.get("action", ()):
            out.append((topics.action, t + 2_000_000, m.array_msg(actions[i]), m.FLOAT64_ARRAY))
    return out


def write_trajectory_bag(
    path: str | Path, frames: np.ndarray, states: np.ndarray, storage: str = "mcap", **kw
) -> Path:
    """Write one trajectory (see `trajectory_records` for the keyword arguments) to a bag."""
    return write_bag(path, trajectory_records(frames, states, **kw), storage=storage)
