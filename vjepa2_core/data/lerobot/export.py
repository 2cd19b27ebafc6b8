"""DROID-layout episodes (what `vjepa2-sim-collect` and `vjepa2-bag2droid` write) to a LeRobotDataset v3.0."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vjepa2_core.data.droid import MP4_MARKER, DROIDDataError, load_clip, open_episode, read_index
from vjepa2_core.data.lerobot.mapping import view_name
from vjepa2_core.data.lerobot.writer import LeRobotWriter

log = logging.getLogger(__name__)


@dataclass
class ExportReport:
    episodes: int = 0
    frames: int = 0
    fps: int = 0
    views: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # episode directory -> reason


def droid_views(path: Path) -> list[str]:
    """The camera view keys of a DROID episode's metadata (the ones pointing at recordings/MP4/)."""
    metas = sorted(path.glob("*.json"))
    if not metas:
        raise DROIDDataError(f"{path}: no metadata *.json")
    meta = json.loads(metas[0].read_text())
    return [k for k, v in meta.items() if isinstance(v, str) and MP4_MARKER in v]


def read_droid_episode(path: Path, views: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    """({view name: frames}, states [T,7], video fps) of one DROID episode, through the DROID loader."""
    frames, states, fps = {}, None, None
    for view in views:
        ep = open_episode(path, view)
        clip = load_clip(ep, np.arange(ep.num_frames))
        if states is not None and len(clip["states"]) != len(states):
            raise DROIDDataError(f"{path}: view {view!r} has {ep.num_frames} frames, another {len(states)}")
        frames[view_name(view)], states, fps = clip["frames"], clip["states"].double().numpy(), ep.video_fps
    return frames, states, fps


def export(
    sources: str | Path | Sequence[str | Path],
    out: str | Path,
    views: Sequence[str] | None = None,
    task: str = "",
    robot_type: str = "Franka",
) -> ExportReport:
    """Write every readable episode listed by `sources` (CSV indexes or episode directories) to `out`."""
    paths = read_index(sources)
    if not paths:
        raise DROIDDataError(f"{sources}: no episodes listed")
    report, writer = ExportReport(), None
    try:
        for path in paths:
            try:
                views = list(views) if views else droid_views(Path(path))
                frames, states, fps = read_droid_episode(Path(path), views)
                if writer is None:
                    writer = LeRobotWriter(out, round(fps), robot_type=robot_type)
                    report.fps, report.views = writer.fps, [view_name(v) for v in views]
                if abs(fps - writer.fps) > 1e-3:
                    raise DROIDDataError(f"{path}: video at {fps} fps, the dataset is at {writer.fps}")
                writer.add_episode(frames, states[:, :6], states[:, 6], task)
            except (DROIDDataError, ValueError, OSError) as e:
                report.skipped[str(path)] = str(e)
                log.warning("skipping %s: %s", path, e)
                continue
            report.episodes += 1
            report.frames += len(states)
    finally:
        if writer is not None:
            writer.close()
    return report
