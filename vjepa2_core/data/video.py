"""MP4 reading and writing with OpenCV: seek to the frames a clip needs instead of decoding whole videos."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


class VideoError(RuntimeError):
    """A video that cannot be opened, is empty, or has fewer frames than requested."""


def video_info(path: str | Path) -> tuple[int, float]:
    """(frame count, average fps) from the container header, without decoding."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"cannot open video {path}")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
    finally:
        cap.release()
    if count <= 0 or not fps > 0:
        raise VideoError(f"video {path} reports {count} frames at {fps} fps")
    return count, fps


def read_frames(path: str | Path, indices: Sequence[int]) -> np.ndarray:
    """RGB uint8 [len(indices),H,W,3] for ascending frame `indices`: one seek, then grab/skip up to the last index."""
    idx = [int(i) for i in indices]
    if not idx or any(b <= a for a, b in zip(idx, idx[1:])) or idx[0] < 0:
        raise ValueError(f"frame indices must be non-empty, non-negative and strictly ascending, got {idx}")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"cannot open video {path}")
        if idx[0] > 0:
            cap.set(cv2.CAP_PROP_POS_FRAMES, idx[0])
        wanted, out, pos = set(idx), [], idx[0]
        while pos <= idx[-1]:
            if not cap.grab():
                raise VideoError(f"{path}: could not decode frame {pos} (needed up to {idx[-1]})")
            if pos in wanted:
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    raise VideoError(f"{path}: could not retrieve frame {pos}")
                out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            pos += 1
    finally:
        cap.release()
    return np.stack(out)


def write_mp4(path: str | Path, frames: np.ndarray, fps: float, fourcc: str = "mp4v") -> None:
    """Write RGB uint8 frames [T,H,W,3] as an MPEG-4 (mp4v) file that OpenCV and ffmpeg can read back; `fourcc`
    picks another codec in the same container (FFV1: lossless, the simulator's collections)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 [T,H,W,3] with T >= 1, got {frames.dtype} {frames.shape}")
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (w, h))
    if not writer.isOpened():
        raise VideoError(f"cannot open an {fourcc} writer for {path} ({w}x{h} @ {fps} fps)")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
