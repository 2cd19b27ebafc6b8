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
        wanted = sorted(s for s in (range(len(self)) if steps is None else steps) if self.skip_reasons[s] is None)
        by_image: dict[int, list[int]] = {}
        for s in wanted:
            by_image.setdefault(int(self.image_index[s]), []).append(s)
        # With header stamps the bag order of images can differ from step order: hold frames until their turn.
        ready: dict[int, np.ndarray] = {}
        seen: set[int] = set()
        next_i = 0
        with BagReader(self.path) as reader:
            for k, msg in enumerate(reader.messages([self.topics.image])):
                steps_k = by_image.pop(k, None)
                if steps_k is None:
                    continue
                try:
                    frame = m.decode_image_msg(reader.deserialize(msg), msg.msgtype)
                    ready.update((s, frame) for s in steps_k)
                except Exception as err:  # noqa: BLE001 - decoder errors vary by codec
                    if not seen:
                        raise BagError(f"cannot decode images on {self.topics.image} in {self.path}: {err}") from err
                    for s in steps_k:
                        self.skip_reasons[s] = "bad_image"
                seen.add(k)
                while next_i < len(wanted) and int(self.image_index[wanted[next_i]]) in seen:
                    step = wanted[next_i]
                    next_i += 1
                    if step in ready:
                        yield step, ready.pop(step)
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
    """Read a bag and align camera, pose, gripper and (if recorded) commands onto a `rate` Hz grid.

    `stamps`: 'receive' (bag time, every message has it) or 'header' (sensor time where a header exists).
    Topics missing from the bag raise BagError, except the command topics. Commands are either 7-value delta
    actions (Float64MultiArray) or target poses (PoseStamped, e.g. the planner's ~/ee_target, with the gripper
    target from `topics.gripper_command`); without them actions are the pose differences of consecutive aligned
    states, as in DROID. An empty `topics.gripper` means a robot without gripper (closedness 0).
    """
    if stamps not in ("receive", "header"):
        raise ValueError(f"stamps must be 'receive' or 'header', got {stamps!r}")
    path, topics = Path(path), topics or Topics()
    with BagReader(path) as reader:
        m.check_type(topics.image, reader.msgtype(topics.image), m.IMAGE_TYPES)
        m.check_type(topics.pose, reader.msgtype(topics.pose), (m.POSE,))
        wanted = [topics.image, topics.pose]
        if topics.gripper:
            m.check_type(topics.gripper, reader.msgtype(topics.gripper), m.SCALAR_TYPES)
            wanted.append(topics.gripper)
        optional = {topics.action: m.ARRAY_TYPES + (m.POSE,), topics.gripper_command: m.SCALAR_TYPES}
        for topic, allowed in optional.items():
            if topic and topic in reader.topics:
                m.check_type(topic, reader.msgtype(topic), allowed)
                wanted.append(topic)
        series = _read_series(reader, topics, wanted, stamps)
        action_type = reader.topics.get(topics.action)
    return _align(path, topics, rate, tolerance, series, action_type)


def _read_series(reader: BagReader, topics: Topics, wanted: list[str], stamps: str) -> dict:
    """topic -> (stamps, values); image values are message ordinals, for the decoding pass. Counts bad messages."""
    series: dict[str, tuple[list[int], list]] = {t: ([], []) for t in wanted}
    bad: Counter = Counter()
    image_ordinal = -1
    for msg in reader.messages(wanted):
        stamp_list, values = series[msg.topic]
        try:
            if msg.topic == topics.image:
                image_ordinal += 1
                stamp = _header_stamp(msg.data) if stamps == "header" else msg.timestamp
                value = image_ordinal
            else:
                obj = reader.deserialize(msg)
                stamp = (m.stamp_ns(obj) if stamps == "header" else None) or msg.timestamp
                if msg.msgtype == m.POSE:
                    value = m.pose_to_array(obj)
                elif msg.msgtype in m.SCALAR_TYPES:
                    value = m.scalar_value(obj)
                else:
                    value = m.array_value(obj)
        except (BagError, ValueError, struct.error):
            bad[msg.topic] += 1
            continue
        stamp_list.append(stamp)
        values.append(value)
    series["bad"] = bad
    return series


def _sorted(stamps: list[int], values: list) -> tuple[np.ndarray, list]:
    order = np.argsort(np.asarray(stamps, dtype=np.int64), kind="stable")
    return np.asarray(stamps, dtype=np.int64)[order], [values[i] for i in order]


def _pick(series: dict, topic: str, times: np.ndarray, tol: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Values [N, width] of `topic` nearest to each grid time (NaN where none within tol) and the hit mask."""
    stamps, values = _sorted(*series[topic])
    idx = nearest_within(stamps, times, tol)
    out = np.full((len(times), width), np.nan)
    hit = idx >= 0
    if hit.any():
        out[hit] = np.stack([np.atleast_1d(values[i]) for i in idx[hit]])
    return out, hit


def _align(path: Path, topics: Topics, rate: float, tolerance: float, series: dict, action_type: str | None):
    tol = int(round(tolerance * NS))
    streams = [topics.image, topics.pose] + ([topics.gripper] if topics.gripper else [])
    for topic in streams:
        if not series[topic][0]:
            raise BagError(f"no usable messages on {topic} in {path}")
    image_t, ordinals = _sorted(*series[topics.image])  # header stamps may be out of bag order
    # The grid starts on the first camera frame that has state data around it and runs while all streams do.
    first, last = overlap([np.sort(np.asarray(series[t][0])) for t in streams])
    start = image_t[np.searchsorted(image_t, first - tol)] if image_t[-1] >= first - tol else first
    times = control_grid(int(start), last + tol, rate)
    if len(times) == 0:
        raise BagError(f"camera, pose and gripper streams of {path} do not overlap in time")
    nearest_image = nearest_within(image_t, times, tol)
    image_index = np.array([ordinals[i] if i >= 0 else -1 for i in nearest_image], dtype=np.int64)
    states = np.zeros((len(times), 7))
    states[:, :6], has_pose = _pick(series, topics.pose, times, tol, 6)
    has_grip = np.ones(len(times), dtype=bool)
    if topics.gripper:
        grip, has_grip = _pick(series, topics.gripper, times, tol, 1)
        states[:, 6] = grip[:, 0]
    states[~(has_pose & has_grip)] = np.nan
    reasons = [
        (
            "no_image"
            if image_index[t] < 0
            else "no_pose" if not has_pose[t] else "no_gripper" if not has_grip[t] else None
        )
        for t in range(len(times))
    ]
    actions, source = _actions(series, topics, times, tol, states, action_type)
    return AlignedBag(path, topics, rate, times, states, actions, image_index, reasons, source, series["bad"])


def _actions(series, topics, times, tol, states, action_type) -> tuple[np.ndarray, str]:
    """Per-step delta actions [N,7] (NaN where unknown) and where they came from."""
    s = torch.as_tensor(states, dtype=torch.float64)
    if action_type is None:  # DROID convention: the difference of consecutive states
        actions = np.full((len(times), 7), np.nan)
        actions[:-1] = pose_diff(s[:-1], s[1:]).numpy()
        return actions, "states"
    if action_type in m.ARRAY_TYPES:
        return _pick(series, topics.action, times, tol, 7)[0], "recorded"
    target = np.zeros((len(times), 7))
    target[:, :6] = _pick(series, topics.action, times, tol, 6)[0]
    if topics.gripper_command in series:
        target[:, 6] = _pick(series, topics.gripper_command, times, tol, 1)[0][:, 0]
    else:
        target[:, 6] = states[:, 6]  # no gripper command recorded: the gripper holds
    return pose_diff(s, torch.as_tensor(target)).numpy(), "recorded_targets"
