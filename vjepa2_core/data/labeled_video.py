"""Labelled datasets for frozen-encoder probes, in the reference list formats.

- `VideoListDataset`: a CSV list of `path label` lines (space separated, SSv2/Diving48/K400/Jester/COIN lists);
  each video gives `num_segments` clips of `frames_per_clip` frames `frame_step` apart, one per equal partition
  of the video (random inside the partition when training, its start otherwise), each with the views of the
  transform. Items are `(clips[segment][view] [3,T,H,W], label, [indices [T]] * segments)`.
- `ImageFolderDataset`: ImageNet-style `root/<class>/<image>` folders; items `(views [3,H,W] list, label)`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from vjepa2_core.data.video import read_frames, video_info
from vjepa2_core.data.video_dataset import IMAGE_EXTS, read_list

ClipTransform = Callable[[np.ndarray, np.random.Generator], list[torch.Tensor]]


def eval_as_clip_transform(transform: Callable[[np.ndarray], list[torch.Tensor]]) -> ClipTransform:
    """Give a deterministic transform the (frames, rng) signature the datasets call."""

    def call(frames: np.ndarray, rng: np.random.Generator) -> list[torch.Tensor]:
        del rng
        return transform(frames)

    return call


def segment_indices(
    num_frames: int,
    frames_per_clip: int,
    frame_step: int,
    num_segments: int,
    rng: np.random.Generator | None,
    start_multiple: int = 1,
) -> list[np.ndarray]:
    """Frame indices of each segment. A partition long enough for a clip holds it (random start if `rng`, rounded
    down to a multiple of `start_multiple`); otherwise clips are spread evenly over the video, overlapping, and
    indices past the end repeat the last frame."""
    span = (frames_per_clip - 1) * frame_step + 1
    part = num_frames // num_segments
    out = []
    for i in range(num_segments):
        if part >= span:
            offset = int(rng.integers(0, part - span + 1)) if rng is not None else 0
            start = i * part + offset - offset % start_multiple
        else:
            start = 0 if num_segments == 1 else round(i * max(0, num_frames - span) / (num_segments - 1))
        idx = start + np.arange(frames_per_clip) * frame_step
        out.append(np.minimum(idx, num_frames - 1).astype(np.int64))
    return out


def read_clip(path: str, indices: np.ndarray) -> np.ndarray:
    """Frames at `indices` (which may repeat, e.g. padding a short video) as uint8 [T,H,W,3]."""
    unique, inverse = np.unique(indices, return_inverse=True)
    return read_frames(path, unique.tolist())[inverse]


class SeededDataset(Dataset):
    """`samples` plus an epoch: item i's random draws come from a generator keyed by (seed, epoch, i)."""

    samples: list
    seed: int = 0
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])


class VideoListDataset(SeededDataset):
    def __init__(
        self,
        csv: str | Path,
        transform: ClipTransform,
        frames_per_clip: int = 16,
        frame_step: int = 4,
        num_segments: int = 1,
        training: bool = False,
        seed: int = 0,
        start_multiple: int = 1,
    ) -> None:
        self.samples = read_list(csv)
        if not self.samples:
            raise ValueError(f"{csv}: no videos listed")
        self.transform, self.training, self.seed = transform, training, int(seed)
        self.fpc, self.step, self.num_segments = frames_per_clip, frame_step, num_segments
        self.start_multiple = start_multiple

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        rng = self.rng(index)
        num_frames, _ = video_info(path)
        rng_or_none = rng if self.training else None
        indices = segment_indices(num_frames, self.fpc, self.step, self.num_segments, rng_or_none, self.start_multiple)
        clips = [self.transform(read_clip(path, idx), rng) for idx in indices]
        return clips, label, [torch.from_numpy(i) for i in indices]


class ImageFolderDataset(SeededDataset):
    """`root/<class name>/<image>`; class ids follow the sorted class-folder names (as torchvision's ImageFolder)."""

    def __init__(self, root: str | Path, transform: ClipTransform, training: bool = False, seed: int = 0) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist")
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.samples = [
            (str(f), k)
            for k, c in enumerate(self.classes)
            for f in sorted((root / c).iterdir())
            if f.suffix.lower() in IMAGE_EXTS
        ]
        if not self.samples:
            raise ValueError(f"{root}: no images in class folders")
        self.transform, self.training, self.seed = transform, training, int(seed)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise OSError(f"cannot read image {path}")
        views = self.transform(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)[None], self.rng(index))
        return [v[:, 0] for v in views], label
