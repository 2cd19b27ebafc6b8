"""A bag's camera topic as a stream of (time s, RGB frame): `vjepa2-extract-embeddings` rosbag inputs and
`vjepa2-bag-goals`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np

from vjepa2_core.data.images import ImageDecodeError
from vjepa2_core.data.video import VideoError
from vjepa2_ros.bags.messages import IMAGE_TYPES, check_type, decode_image_msg
from vjepa2_ros.bags.reader import BagError, BagReader


def camera_frames(
    bag: str | Path, topic: str, from_bag_start: bool = False
) -> Iterator[tuple[float, Callable[[], np.ndarray]]]:
    """(time, frame getter) of `topic` in receive order; times are seconds since the topic's first message (or,
    `from_bag_start`, since the bag's first message of any topic) and a frame is decoded only when its getter is
    called. Bag and decoding failures become `VideoError`, so the
    extractor skips and counts the bag like an unreadable video."""
    try:
        with BagReader(bag) as reader:
            msgtype = reader.msgtype(topic)
            check_type(topic, msgtype, IMAGE_TYPES)
            start = reader.start_time if from_bag_start else None
            for message in reader.messages([topic]):
                start = message.timestamp if start is None else start
                yield (message.timestamp - start) * 1e-9, partial(_decode, reader, message, msgtype)
    except (BagError, ImageDecodeError) as err:
        raise VideoError(f"{bag} {topic}: {err}") from err


def _decode(reader: BagReader, message, msgtype: str) -> np.ndarray:
    try:
        return decode_image_msg(reader.deserialize(message), msgtype)
    except (BagError, ImageDecodeError) as err:
        raise VideoError(f"{reader.path} {message.topic} at t={message.timestamp}: {err}") from err
