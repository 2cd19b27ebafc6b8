"""A robot recording aligned on the control-rate grid: states, actions and (lazily decoded) camera frames per step.

Loading reads the bag twice: once for stamps and the small messages, once more to decode only the frames that
the grid selects, so a long bag never needs all its images in memory.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vjepa2_core.planning.poses import pose_diff
from vjepa2_ros.bags import messages as m
from vjepa2_ros.bags.alignment import NS, control_grid, nearest_within, overlap
from vjepa2_ros.bags.reader import BagError, BagReader
from vjepa2_ros.bags.writer import Topics


@dataclass
class AlignedBag:
    """Per grid step t: time, state [7], action [7] (NaN when unknown), image index (-1 when none), skip reason."""

    path: Path
    topics: Topics
    rate: float
    times: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    image_index: np.ndarray
    skip_reasons: list[str | None]
    action_source: str
    bad_messages: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.times)

    @property
    def valid(self) -> np.ndarray:
        return np.array([r is None for r in self.skip_reasons], dtype=bool)

    def skip_counts(self) -> dict[str, int]:
        return dict(Counter(r for r in self.skip_reasons if r is not None))

    def frames(self, steps: Iterable[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (step, RGB uint8 [H,W,3]) in step order for the valid steps asked for (all when None).

        A frame that fails to decode marks its steps 'bad_image' and is skipped; if the very first decode fails
        (an unsupported encoding, usually) a BagError explains it instead.
        """
        wanted = [s for s in (range(len(self)) if steps is None else steps) if self.skip_reasons[s] is None]
        by_image: dict[int, list[int]] = {}
        for s in wanted:
            by_image.setdefault(int(self.image_index[s]), []).append(s)
        if not by_image:
            return
        decoded_any = False
        with BagReader(self.path) as reader:
            for k, msg in enumerate(reader.messages([self.topics.image])):
                steps_k = by_image.pop(k, None)
                if steps_k is None:
                    continue
                try:
                    frame = m.decode_image_msg(reader.deserialize(msg), msg.msgtype)
                except Exception as err:  # noqa: BLE001 - decoder errors vary by codec
                    if not decoded_any:
                        raise BagError(f"cannot decode images on {self.topics.image} in {self.path}: {err}") from err
                    for s in steps_k:
                        self.skip_reasons[s] = "bad_image"
                    continue
                decoded_any = True
                for s in steps_k:
                    yield s, frame
                if not by_image:
                    return


def _header_stamp(data: bytes) -> int:
    """Header stamp straight from CDR bytes (every stamped type starts with it), without deserializing."""
    little = data[1] == 1
    sec, nsec = struct.unpack_from("<iI" if little else ">iI", data, 4)
    return sec * NS + nsec


def load_aligned(
    path: str | Path,
    topics: Topics | None = None,
    rate: float = 4.0,
    tolerance: float = 0.05,
    stamps: str = "receive",
) -> AlignedBag:
    """Read a bag and align camera, pose, gripper and (if recorded) action onto a `rate` Hz grid.

    `stamps`: 'receive' (bag time, every message has it) or 'header' (sensor time where a header exists).
    Topics missing from the bag raise BagError, except the action topic: without it actions are the pose
    differences of consecutive aligned states, as in DROID.
    """
    if stamps not in ("receive", "header"):
        raise ValueError(f"stamps must be 'receive' or 'header', got {stamps!r}")
    path, topics = Path(path), topics or Topics()
    with BagReader(path) as reader:
        m.check_type(topics.image, reader.msgtype(topics.image), m.IMAGE_TYPES)
        m.check_type(topics.pose, reader.msgtype(topics.pose), (m.POSE,))
        m.check_type(topics.gripper, reader.msgtype(topics.gripper), m.SCALAR_TYPES)
        has_actions = bool(topics.action) and topics.action in reader.topics
        if has_actions:
            m.check_type(topics.action, reader.msgtype(topics.action), m.ARRAY_TYPES)
        wanted = [topics.image, topics.pose, topics.gripper] + ([topics.action] if has_actions else [])
        series: dict[str, tuple[list[int], list]] = {t: ([], []) for t in wanted}
        bad: Counter = Counter()
        image_ordinal = -1
        for msg in reader.messages(wanted):
            stamp_list, values = series[msg.topic]
            try:
                if msg.topic == topics.image:
                    image_ordinal += 1  # position among the topic's messages, for the decoding pass
                    stamp = _header_stamp(msg.data) if stamps == "header" else msg.timestamp
                    value = image_ordinal
                else:
                    obj = reader.deserialize(msg)
                    stamp = (m.stamp_ns(obj) if stamps == "header" else None) or msg.timestamp
                    if msg.topic == topics.pose:
                        value = m.pose_to_array(obj)
                    elif msg.topic == topics.gripper:
                        value = m.scalar_value(obj)
                    else:
                        value = m.array_value(obj)
            except (BagError, ValueError, struct.error):
                bad[msg.topic] += 1
                continue
            stamp_list.append(stamp)
            values.append(value)
    return _align(path, topics, rate, tolerance, series, has_actions, bad)


def _sorted(stamps: list[int], values: list) -> tuple[np.ndarray, list]:
    order = np.argsort(np.asarray(stamps, dtype=np.int64), kind="stable")
    return np.asarray(stamps, dtype=np.int64)[order], [values[i] for i in order]


def _align(path, topics, rate, tolerance, series, has_actions, bad) -> AlignedBag:
    tol = int(round(tolerance * NS))
    image_t, ordinals = _sorted(*series[topics.image])  # header stamps may be out of bag order
    pose_t, poses = _sorted(*series[topics.pose])
    grip_t, grips = _sorted(*series[topics.gripper])
    for topic, stamps_ in ((topics.image, image_t), (topics.pose, pose_t), (topics.gripper, grip_t)):
        if len(stamps_) == 0:
            raise BagError(f"no usable messages on {topic} in {path}")
    # The grid starts on the first camera frame that has state data around it and runs while all streams do.
    span = overlap([image_t, pose_t, grip_t])
    times = np.zeros(0, dtype=np.int64)
    if span is not None:
        first = image_t[np.searchsorted(image_t, span[0] - tol)] if image_t[-1] >= span[0] - tol else span[0]
        times = control_grid(int(first), span[1] + tol, rate)
    if len(times) == 0:
        raise BagError(f"camera, pose and gripper streams of {path} do not overlap in time")
    nearest_image = nearest_within(image_t, times, tol)
    image_index = np.array([ordinals[i] if i >= 0 else -1 for i in nearest_image], dtype=np.int64)
    pose_i = nearest_within(pose_t, times, tol)
    grip_i = nearest_within(grip_t, times, tol)
    states = np.full((len(times), 7), np.nan)
    ok = (pose_i >= 0) & (grip_i >= 0)
    if ok.any():
        states[ok, :6] = np.stack([poses[i] for i in pose_i[ok]])
        states[ok, 6] = [grips[i] for i in grip_i[ok]]
    reasons = []
    for t in range(len(times)):
        reasons.append(
            "no_image"
            if image_index[t] < 0
            else "no_pose" if pose_i[t] < 0 else "no_gripper" if grip_i[t] < 0 else None
        )
    actions = np.full((len(times), 7), np.nan)
    if has_actions:
        act_t, acts = _sorted(*series[topics.action])
        act_i = nearest_within(act_t, times, tol)
        if (act_i >= 0).any():
            actions[act_i >= 0] = np.stack([acts[i] for i in act_i[act_i >= 0]])
    else:
        pair = ok[:-1] & ok[1:]
        if pair.any():
            s = torch.as_tensor(states, dtype=torch.float64)
            actions[:-1][pair] = pose_diff(s[:-1][pair], s[1:][pair]).numpy()
    return AlignedBag(
        path=path,
        topics=topics,
        rate=rate,
        times=times,
        states=states,
        actions=actions,
        image_index=image_index,
        skip_reasons=reasons,
        action_source="recorded" if has_actions else "states",
        bad_messages=bad,
    )
