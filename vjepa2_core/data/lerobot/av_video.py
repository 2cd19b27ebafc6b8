"""AV1 MP4 decoding and encoding with PyAV: LeRobot videos hold many episodes per file, addressed by frame number.

OpenCV decodes these AV1 files only in some of its wheels (some open them and return zero frames), so LeRobot data
goes through PyAV, whose wheels bundle libdav1d (decode) and SVT-AV1 (encode, LeRobot's default codec).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vjepa2_core.data.video import VideoError

# LeRobot's default encoding (lerobot/datasets/video_utils.py): SVT-AV1, yuv420p, GOP 2, CRF 30. The PyAV wheels
# (>= 14) ship libsvtav1, checked at import by `av1_encoder()`.
AV1_ENCODERS = ("libsvtav1", "libaom-av1")
ENCODE_OPTIONS = {"g": "2", "crf": "30"}
os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration to stderr per file; errors only


def av1_encoder() -> str:
    """The first AV1 encoder this PyAV build has (SVT-AV1 in the PyPI wheels)."""
    for name in AV1_ENCODERS:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - PyAV raises several types for an unknown codec
            continue
    raise VideoError(f"this PyAV build ({av.__version__}) has no AV1 encoder (tried {list(AV1_ENCODERS)})")


def read_frames_at(path: str | Path, numbers: Sequence[int], fps: float) -> np.ndarray:
    """RGB uint8 [len(numbers),H,W,3] of video frames `numbers` (ascending; frame n is shown at n / fps).

    Frame numbers come from each frame's presentation time rounded in frame units (LeRobot's timestamps are not
    exact at fps 15). One seek to the keyframe before the first wanted frame, then decoding up to the last one.
    """
    want = [int(n) for n in numbers]
    if not want or want[0] < 0 or any(b <= a for a, b in zip(want, want[1:])):
        raise ValueError(f"frame numbers must be non-empty, non-negative and strictly ascending, got {want}")
    frames = _decode(path, want, fps, seek=True)
    if len(frames) < len(want) and want[0] > 0:  # a seek that landed past the first frame: decode from the start
        frames = _decode(path, want, fps, seek=False)
    missing = [n for n in want if n not in frames]
    if missing:
        raise VideoError(f"{path}: frames {missing[:5]} (of {len(missing)}) not in the video (truncated?)")
    return np.stack([frames[n] for n in want])


def _decode(path: str | Path, want: list[int], fps: float, seek: bool) -> dict[int, np.ndarray]:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            return _decode_range(container, container.streams.video[0], want, fps, seek)
    except av.error.FFmpegError as e:
        raise VideoError(f"{path}: cannot decode ({e})") from e


def _decode_range(container, stream, want: list[int], fps: float, seek: bool) -> dict[int, np.ndarray]:
    first, last, wanted = want[0], want[-1], set(want)
    if seek and first > 0 and stream.time_base is not None:
        container.seek(int((first - 0.5) / fps / stream.time_base), stream=stream, backward=True)
    out: dict[int, np.ndarray] = {}
    for frame in container.decode(stream):
        if frame.time is None:
            continue
        n = int(round(frame.time * fps))
        if n in wanted:
            out[n] = frame.to_ndarray(format="rgb24")
        if n >= last:
            break
    return out


class AV1Writer:
    """Frames appended to one MP4 (AV1, yuv420p) at a constant `fps`; `frames_written` gives the next frame number."""

    def __init__(self, path: str | Path, fps: int, width: int, height: int):
        self.path, self.fps, self.frames_written = Path(path), int(fps), 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), "w")
        self._stream = self._container.add_stream(av1_encoder(), rate=self.fps, options=dict(ENCODE_OPTIONS))
        self._stream.width, self._stream.height, self._stream.pix_fmt = int(width), int(height), "yuv420p"
        self._stream.time_base = Fraction(1, self.fps)

    def write(self, frames: np.ndarray) -> None:
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = self.frames_written, Fraction(1, self.fps)
            self._container.mux(self._stream.encode(frame))
            self.frames_written += 1

    def size_bytes(self) -> int:
        """Bytes on disk so far (the muxer writes as it goes)."""
        return self.path.stat().st_size if self.path.exists() else 0

    def close(self) -> None:
        self._container.mux(self._stream.encode(None))
        self._container.close()
