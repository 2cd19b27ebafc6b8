"""EPIC-KITCHENS-100 action anticipation in the reference layout (annotation CSVs + `P01/videos/P01_01.MP4`).

An annotation row (`narration_id, participant_id, video_id, ..., start_timestamp, stop_timestamp, ...,
verb_class, noun_class, ...`) asks: seeing the video up to `anticipation_time_sec` before the action starts,
which verb, noun and (verb, noun) action comes next. The observed clip is `frames_per_clip` frames at
`frames_per_second`, ending at that point. Class ids are made contiguous over train + val; actions are the
(verb, noun) pairs that occur.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vjepa2_core.data.labeled_video import SeededDataset, read_clip
from vjepa2_core.data.video import video_info

EK100_COLUMNS = (
    "narration_id",
    "participant_id",
    "video_id",
    "narration_timestamp",
    "start_timestamp",
    "stop_timestamp",
    "start_frame",
    "stop_frame",
    "narration",
    "verb",
    "verb_class",
    "noun",
    "noun_class",
    "all_nouns",
    "all_noun_classes",
)


def parse_timestamp(text: str) -> float:
    """'HH:MM:SS.ff' -> seconds."""
    h, m, s = text.strip().split(":")
    return 3600 * int(h) + 60 * int(m) + float(s)


@dataclass(frozen=True)
class Segment:
    video: str
    start_s: float
    verb: int
    noun: int


def read_annotations(path: str | Path, base_path: str | Path) -> list[Segment]:
    """Rows of an EK100 annotation CSV (header required, reference column names)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"participant_id", "video_id", "start_timestamp", "verb_class", "noun_class"}
    if not rows or not need <= set(rows[0]):
        raise ValueError(f"{path}: an EK100 annotation CSV needs columns {sorted(need)}")
    base = Path(base_path)
    return [
        Segment(
            str(base / r["participant_id"] / "videos" / f"{r['video_id']}.MP4"),
            parse_timestamp(r["start_timestamp"]),
            int(r["verb_class"]),
            int(r["noun_class"]),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class ClassMaps:
    verbs: dict[int, int]
    nouns: dict[int, int]
    actions: dict[tuple[int, int], int]

    @staticmethod
    def build(*splits: Sequence[Segment]) -> ClassMaps:
        segs = [s for split in splits for s in split]
        verbs = {v: i for i, v in enumerate(sorted({s.verb for s in segs}))}
        nouns = {n: i for i, n in enumerate(sorted({s.noun for s in segs}))}
        actions = {a: i for i, a in enumerate(sorted({(s.verb, s.noun) for s in segs}))}
        return ClassMaps(verbs, nouns, actions)

    def labels(self, seg: Segment) -> tuple[int, int, int]:
        return self.verbs[seg.verb], self.nouns[seg.noun], self.actions[(seg.verb, seg.noun)]


class EK100Anticipation(SeededDataset):
    """Items `(clip views list [3,T,H,W], verb, noun, action, anticipation_time_s)`.

    `anticipation_time_sec` is a number, or [lo, hi] drawn uniformly per sample when training.
    """

    def __init__(
        self,
        segments: Sequence[Segment],
        classes: ClassMaps,
        transform: Callable[[np.ndarray, np.random.Generator], list[torch.Tensor]],
        frames_per_clip: int = 32,
        frames_per_second: float = 8.0,
        anticipation_time_sec: float | Sequence[float] = 1.0,
        training: bool = False,
        seed: int = 0,
    ) -> None:
        if not segments:
            raise ValueError("no EK100 segments")
        self.samples, self.classes, self.transform = list(segments), classes, transform
        self.fpc, self.fps = int(frames_per_clip), float(frames_per_second)
        at = anticipation_time_sec
        self.anticipation = (float(at), float(at)) if isinstance(at, int | float) else (float(at[0]), float(at[-1]))
        self.training, self.seed = training, int(seed)

    def frame_indices(self, num_frames: int, video_fps: float, end_s: float) -> np.ndarray:
        """`fpc` indices at `frames_per_second` ending at `end_s` (clamped into the video)."""
        step = max(1, int(round(video_fps / self.fps)))
        last = int(np.floor(end_s * video_fps))
        idx = last - step * np.arange(self.fpc - 1, -1, -1)
        return np.clip(idx, 0, num_frames - 1).astype(np.int64)

    def __getitem__(self, index: int):
        seg = self.samples[index]
        rng = self.rng(index)
        lo, hi = self.anticipation
        a_time = float(rng.uniform(lo, hi)) if self.training and hi > lo else lo
        num_frames, video_fps = video_info(seg.video)
        idx = self.frame_indices(num_frames, video_fps, seg.start_s - a_time)
        verb, noun, action = self.classes.labels(seg)
        return self.transform(read_clip(seg.video, idx), rng), verb, noun, action, a_time
