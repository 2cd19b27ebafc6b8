"""LeRobot episodes behind the project's two clip datasets: the DROID clip dataset (AC post-training) and the
video dataset (pretraining, frames only). Only where an episode's states and frames come from differs; clip
sampling, transforms, skipping and counting stay those of `droid.DROIDDataset` and `video_dataset.VideoDataset`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vjepa2_core.data.droid import DROIDDataset, clip_from_states
from vjepa2_core.data.lerobot.mapping import KeyMapping, LeRobotError
from vjepa2_core.data.lerobot.reader import EpisodeRef, LeRobotEpisode, LeRobotSource, open_sources
from vjepa2_core.data.video_dataset import Entry, VideoDataset


def list_episodes(sources: Sequence[LeRobotSource], views: Sequence[str] = ()) -> list[EpisodeRef]:
    """Every episode of the dataset roots whose files are there, in root then episode order."""
    return [ref for src in sources for ref in src.refs(views)]


class LeRobotClipDataset(DROIDDataset):
    """`DROIDDataset` over LeRobot episodes: `paths` are `EpisodeRef`s, camera views are video feature names."""

    def __init__(
        self,
        sources: str | Path | Sequence[str | Path],
        *,
        mapping: KeyMapping | None = None,
        episodes: Sequence[EpisodeRef] | None = None,
        **kwargs,
    ):
        if kwargs.get("camera_frame"):
            raise LeRobotError("data.camera_frame: LeRobot datasets carry no camera extrinsics")
        self.sources = {src.root: src for src in open_sources(sources, mapping)}
        views = list(kwargs.get("camera_views", ()))
        for src in self.sources.values():
            for view in views:
                src.camera_key(view)  # an unknown camera fails at start-up, naming the dataset's cameras
        refs = list(episodes) if episodes is not None else list_episodes(list(self.sources.values()), views)
        super().__init__(sources, episodes=refs, **kwargs)

    def open_episode(self, i: int, view: str) -> LeRobotEpisode:
        ref = self.paths[i]
        return self.sources[ref.root].episode(ref.index, view)

    def load_clip(self, ep: LeRobotEpisode, idx: np.ndarray, decode: bool = True) -> dict:
        clip = clip_from_states(ep.states(idx), np.zeros((len(idx), 6)), idx, where=ep.path)
        if decode:
            clip["frames"] = ep.frames(idx)
        return clip


class LeRobotVideoDataset(VideoDataset):
    """`VideoDataset` whose entries are (episode, camera) pairs of LeRobot datasets, one dataset root per source."""

    def __init__(self, data_paths: Sequence[str | Path], *args, camera_views: Sequence[str] = (), **kwargs):
        self.camera_views = list(camera_views)
        super().__init__(data_paths, *args, **kwargs)

    def list_entries(self, data_paths: Sequence[str | Path], fpcs: Sequence[int], tubelet_size: int) -> list[Entry]:
        entries = []
        for k, (root, fpc) in enumerate(zip(data_paths, fpcs)):
            src = LeRobotSource(root, frames_only=True)
            cameras = [src.camera_key(v) for v in self.camera_views] if self.camera_views else src.cameras
            for ref in src.refs(self.camera_views):
                row = src.row_of(ref.index)
                for cam in cameras:
                    entries.append(Entry(f"{ref}/{cam}", 0, int(fpc), False, k, (src, row, cam)))
        return entries

    def video_info(self, entry: Entry) -> tuple[int, float]:
        src, row, _ = entry.ref
        return int(src.length[row]), src.fps

    def read(self, entry: Entry, indices: Sequence[int]) -> np.ndarray:
        src, row, cam = entry.ref
        return src.frames(row, cam, indices)


def clip_dataset_factory(section: dict | None, camera_views: Sequence[str] = ()):
    """(make, read) for AC post-training on LeRobot roots (`data.format: lerobot`), the twins of `DROIDDataset` and
    `droid.read_index`: `read(roots)` lists episodes, `make(roots, **kw)` builds a clip dataset over every root read
    so far (held-out roots included); each root's header is read once."""
    mapping, views = KeyMapping.from_config(section), list(camera_views)
    opened: dict[str, LeRobotSource] = {}

    def read(roots: Sequence[str | Path]) -> list[EpisodeRef]:
        for root in roots:
            if str(root) not in opened:
                opened[str(root)] = LeRobotSource(root, mapping)
        return list_episodes([opened[str(r)] for r in roots], views)

    def make(roots: Sequence[str | Path], **kwargs) -> LeRobotClipDataset:
        read(roots)
        return LeRobotClipDataset(list(opened.values()), mapping=mapping, **kwargs)

    return make, read
