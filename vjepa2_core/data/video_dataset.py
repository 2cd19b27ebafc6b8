"""Video clips for self-supervised pretraining: lists of video files (and image folders), OpenCV decoding.

Samples follow the reference layout `(clips, label, clip_indices)` so `vjepa2_core.masks.MultiSeqMaskCollator`
can group them by clip length. Unreadable or too-short videos are skipped (another sample is drawn) and counted in
counters shared with the data-loader workers. Every random draw of item i comes from a generator keyed by
(seed, epoch, i), so a sample does not depend on worker count or order, and resuming an epoch replays it exactly.
"""

from __future__ import annotations

import math
import multiprocessing as mp
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from vjepa2_core.data.transforms import ac_train_transform
from vjepa2_core.data.video import VideoError, read_frames, video_info

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
SKIP_REASONS = ("unreadable", "too_short")


class ShortVideoError(RuntimeError):
    """A video with fewer frames than one clip needs."""


@dataclass(frozen=True)
class Entry:
    path: str
    label: int
    fpc: int  # frames per clip for this entry's source
    is_image: bool
    source: int = 0  # index of the data path it came from
    ref: Any = None  # where the frames are when `path` alone does not say (a LeRobot episode and camera)


def read_list(source: str | Path) -> list[tuple[str, int]]:
    """(path, label) pairs from a CSV/list file ("path [label]", space or comma separated), a video or a folder."""
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS)
        return [(str(p), 0) for p in files]
    if not source.is_file():
        raise FileNotFoundError(f"data path {source} does not exist")
    if source.suffix.lower() in VIDEO_EXTS | IMAGE_EXTS:
        return [(str(source), 0)]
    pairs = []
    for n, line in enumerate(source.read_text().splitlines(), 1):
        parts = line.replace(",", " ").split()
        if not parts or parts[0].startswith("#"):
            continue
        path = Path(parts[0]) if Path(parts[0]).is_absolute() else source.parent / parts[0]
        try:
            label = int(parts[1]) if len(parts) > 1 else 0
        except ValueError as exc:
            raise ValueError(f"{source}:{n}: label must be an integer, got {parts[1]!r}") from exc
        pairs.extend(read_list(path) if path.is_dir() else [(str(path), label)])
    return pairs


def frame_step_for(video_fps: float, fps: float | None, frame_step: int) -> int:
    """Reference pretraining rule: step = ceil(video_fps) // fps when a target fps is given, else `frame_step`."""
    if fps is None:
        return max(1, int(frame_step))
    return max(1, math.ceil(video_fps) // int(fps))


class VideoTrainTransform:
    """uint8 frames [T,H,W,3] -> float [3,T,crop,crop]: one random-resized crop and flip per clip, normalised."""

    def __init__(
        self,
        crop_size: int = 256,
        random_resize_scale: Sequence[float] = (0.3, 1.0),
        random_resize_aspect_ratio: Sequence[float] = (0.75, 1.35),
        horizontal_flip: bool = True,
    ) -> None:
        if crop_size <= 0 or not 0 < random_resize_scale[0] <= random_resize_scale[1]:
            raise ValueError(f"bad crop_size {crop_size} or random_resize_scale {random_resize_scale}")
        self.crop_size = int(crop_size)
        self.scale = tuple(float(v) for v in random_resize_scale)
        self.ratio = tuple(float(v) for v in random_resize_aspect_ratio)
        self.horizontal_flip = horizontal_flip

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        return ac_train_transform(frames, self.crop_size, self.scale, self.ratio, rng, self.horizontal_flip)


class VideoDataset(Dataset):
    """Clips of `dataset_fpcs[i]` frames from the videos listed in `data_paths[i]`.

    Images become clips of one frame repeated `tubelet_size` times (a single tubelet). Each item is
    `([clip [3,T,H,W]] * num_clips, label, [frame indices [T]] * num_clips)`.
    """

    def __init__(
        self,
        data_paths: Sequence[str | Path],
        dataset_fpcs: Sequence[int],
        transform: Callable[[np.ndarray, np.random.Generator], torch.Tensor],
        fps: float | None = None,
        frame_step: int = 4,
        num_clips: int = 1,
        tubelet_size: int = 2,
        max_retries: int = 50,
        seed: int = 0,
    ) -> None:
        if len(data_paths) != len(dataset_fpcs):
            raise ValueError(f"{len(data_paths)} data paths but {len(dataset_fpcs)} dataset_fpcs")
        self.entries = self.list_entries(data_paths, dataset_fpcs, tubelet_size)
        if not self.entries:
            raise ValueError(f"no videos or images found in {list(map(str, data_paths))}")
        self.transform = transform
        self.fps, self.frame_step, self.num_clips = fps, frame_step, num_clips
        self.max_retries = max_retries
        self.seed, self.epoch = int(seed), 0
        self._skips = {reason: mp.Value("i", 0) for reason in SKIP_REASONS}

    def list_entries(self, data_paths: Sequence[str | Path], fpcs: Sequence[int], tubelet_size: int) -> list[Entry]:
        """The videos and images listed in `data_paths` (other layouts override this, `video_info` and `read`)."""
        entries = []
        for k, (source, fpc) in enumerate(zip(data_paths, fpcs)):
            for path, label in read_list(source):
                is_image = Path(path).suffix.lower() in IMAGE_EXTS
                entries.append(Entry(path, label, tubelet_size if is_image else int(fpc), is_image, k))
        return entries

    def video_info(self, entry: Entry) -> tuple[int, float]:
        """(frame count, fps) of an entry's video."""
        return video_info(entry.path)

    def read(self, entry: Entry, indices: Sequence[int]) -> np.ndarray:
        """uint8 frames [T,H,W,3] of an entry's video at `indices`."""
        return read_frames(entry.path, indices)

    def set_epoch(self, epoch: int) -> None:
        """New random clips and crops each epoch (call before creating the epoch's data-loader iterator)."""
        self.epoch = int(epoch)

    def sample_weights(self, datasets_weights: Sequence[float]) -> list[float]:
        """Per-entry weights so that source k is drawn with probability datasets_weights[k] (normalised)."""
        sources = {e.source for e in self.entries}
        if len(datasets_weights) <= max(sources):
            raise ValueError(f"{len(datasets_weights)} datasets_weights for {max(sources) + 1} data paths")
        counts = [sum(e.source == k for e in self.entries) for k in range(len(datasets_weights))]
        return [float(datasets_weights[e.source]) / counts[e.source] for e in self.entries]

    @property
    def fpcs(self) -> list[int]:
        """Distinct clip lengths this dataset yields (feed them to the mask collator)."""
        return sorted({e.fpc for e in self.entries}, reverse=True)

    @property
    def skipped(self) -> dict[str, int]:
        """How many samples were skipped, per reason, over all processes sharing this dataset."""
        return {reason: v.value for reason, v in self._skips.items()}

    def __len__(self) -> int:
        return len(self.entries)

    def clip_indices(self, entry: Entry, rng: np.random.Generator) -> list[np.ndarray]:
        """Frame indices of `num_clips` random clips (uniform start, fps-based step)."""
        num_frames, video_fps = self.video_info(entry)
        step = frame_step_for(video_fps, self.fps, self.frame_step)
        span = (entry.fpc - 1) * step + 1
        if num_frames < span:
            raise ShortVideoError(f"{entry.path}: {num_frames} frames, a clip needs {span}")
        starts = rng.integers(0, num_frames - span + 1, size=self.num_clips).tolist()
        return [np.arange(entry.fpc, dtype=np.int64) * step + s for s in starts]

    def load(self, entry: Entry, rng: np.random.Generator) -> tuple[list[torch.Tensor], int, list[np.ndarray]]:
        if entry.is_image:
            img = cv2.imread(entry.path, cv2.IMREAD_COLOR)
            if img is None:
                raise VideoError(f"cannot read image {entry.path}")
            frames = np.repeat(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)[None], entry.fpc, axis=0)
            indices = [np.zeros(entry.fpc, dtype=np.int64)] * self.num_clips
            return [self.transform(frames, rng) for _ in indices], entry.label, indices
        indices = self.clip_indices(entry, rng)
        clips = [self.transform(self.read(entry, idx.tolist()), rng) for idx in indices]
        return clips, entry.label, indices

    def _count(self, reason: str) -> None:
        with self._skips[reason].get_lock():
            self._skips[reason].value += 1

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        for _ in range(self.max_retries):
            entry = self.entries[index]
            try:
                return self.load(entry, rng)
            except VideoError:
                self._count("unreadable")
            except ShortVideoError:
                self._count("too_short")
            index = int(rng.integers(len(self.entries)))
        raise RuntimeError(f"{self.max_retries} samples in a row could not be read; skipped so far: {self.skipped}")
