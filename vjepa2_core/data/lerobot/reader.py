"""LeRobotDataset v3.0 / v2.1 reader: the header at start-up, then one episode's rows and frames at a time.

Start-up reads `meta/info.json` and the per-episode table (`meta/episodes/*.parquet` in v3.0, `meta/episodes.jsonl`
in v2.1) into a few integer arrays, so a 95,000-episode dataset opens without touching its frames or data rows.
An episode's states come from its row range of one data parquet (only the row groups covering it are read) and its
frames from its camera's MP4, where v3.0 packs many episodes back to back: frame t of an episode is video frame
round(from_timestamp * fps) + t.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vjepa2_core.data.lerobot.av_video import read_frames_at
from vjepa2_core.data.lerobot.mapping import IMAGE_PREFIX, KeyMapping, LeRobotError, column_array, view_name

SUPPORTED = ("v2.0", "v2.1", "v3.0")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpisodeRef:
    """One episode of one dataset root; its path form (`root/episode_000123`) names it in logs and caches."""

    root: Path
    index: int

    def __fspath__(self) -> str:
        return str(self.root / f"episode_{self.index:06d}")

    def __str__(self) -> str:
        return self.__fspath__()


@dataclass
class LeRobotEpisode:
    """What a clip needs from one episode (the same fields as `droid.Episode` that the clip sampler reads)."""

    source: LeRobotSource
    row: int  # position in the source's episode table
    camera: str
    num_frames: int
    video_fps: float

    @property
    def path(self) -> EpisodeRef:
        return EpisodeRef(self.source.root, int(self.source.episode_index[self.row]))

    def states(self, idx: Sequence[int] | None = None) -> np.ndarray:
        """float64 [T,7] (xyz, Euler 'xyz', gripper 0..1) at frame indices `idx` (all frames when None)."""
        return self.source.states(self.row, idx)

    def frames(self, idx: Sequence[int]) -> np.ndarray:
        return self.source.frames(self.row, self.camera, idx)


class LeRobotSource:
    """One LeRobotDataset root: header, episode table and key mapping; reads episodes on demand."""

    def __init__(self, root: str | Path, mapping: KeyMapping | None = None, frames_only: bool = False):
        """`frames_only` (pretraining): the state keys are neither needed nor checked."""
        self.root, self.mapping = Path(root), mapping or KeyMapping()
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            raise LeRobotError(f"{self.root}: no meta/info.json (not a LeRobotDataset v2.x/v3.0 root)")
        try:
            self.info = json.loads(info_path.read_text())
        except (OSError, ValueError) as e:
            raise LeRobotError(f"{info_path}: unreadable ({e})") from e
        self.version = str(self.info.get("codebase_version", "v1.x"))
        if self.version not in SUPPORTED:
            raise LeRobotError(
                f"{info_path}: codebase_version {self.version!r} is not supported (v2.0, v2.1 and v3.0 are); "
                "convert it with lerobot's dataset converters first"
            )
        for key in ("fps", "features", "data_path"):
            if key not in self.info:
                raise LeRobotError(f"{info_path}: missing key {key!r}")
        self.fps = float(self.info["fps"])
        self.features: dict = self.info["features"]
        if not frames_only:
            self.mapping.check_features(self.features, info_path)
        self.cameras = [k for k, f in self.features.items() if f.get("dtype") == "video"]
        self._load_episode_table()

    # ---------------------------------------------------------------------------------------- episode table
    def _load_episode_table(self) -> None:
        if self.version == "v3.0":
            files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
            if not files:
                raise LeRobotError(f"{self.root}: no meta/episodes/chunk-*/file-*.parquet")
            cols = ["episode_index", "length", "data/chunk_index", "data/file_index", "dataset_from_index"]
            cols += [f"videos/{c}/{k}" for c in self.cameras for k in ("chunk_index", "file_index", "from_timestamp")]
            table = pa.concat_tables([_read_columns(f, cols) for f in files])
            get = {c: table.column(c).to_numpy() for c in cols}
            self.episode_index, self.length = get["episode_index"].astype(np.int64), get["length"].astype(np.int64)
            self.data_file = np.stack([get["data/chunk_index"], get["data/file_index"]], axis=1).astype(np.int64)
            self.row_start = get["dataset_from_index"].astype(np.int64)
            self.video_file = {
                c: np.stack([get[f"videos/{c}/chunk_index"], get[f"videos/{c}/file_index"]], 1) for c in self.cameras
            }
            self.video_start = {
                c: np.rint(get[f"videos/{c}/from_timestamp"] * self.fps).astype(np.int64) for c in self.cameras
            }
        else:
            path = self.root / "meta" / "episodes.jsonl"
            try:
                rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
                self.episode_index = np.array([r["episode_index"] for r in rows], dtype=np.int64)
                self.length = np.array([r["length"] for r in rows], dtype=np.int64)
            except (OSError, ValueError, KeyError) as e:
                raise LeRobotError(f"{path}: unreadable episode list ({e})") from e
            chunk = self.episode_index // int(self.info.get("chunks_size", 1000))
            self.data_file = np.stack([chunk, self.episode_index], axis=1)
            self.row_start = np.zeros(len(rows), dtype=np.int64)
            self.video_file = {c: self.data_file for c in self.cameras}
            self.video_start = {c: self.row_start for c in self.cameras}
        order = np.argsort(self.episode_index, kind="stable")
        for name in ("episode_index", "length", "data_file", "row_start"):
            setattr(self, name, getattr(self, name)[order])
        self.video_file = {c: v[order] for c, v in self.video_file.items()}
        self.video_start = {c: v[order] for c, v in self.video_start.items()}

    def __len__(self) -> int:
        return len(self.episode_index)

    def __repr__(self) -> str:
        return f"LeRobotSource({str(self.root)!r}, {self.version}, {len(self)} episodes)"

    def refs(self, views: Sequence[str] = ()) -> list[EpisodeRef]:
        """The episodes whose data file and `views`' video files exist (all cameras when `views` is empty): a
        partial download (a few chunks of the DROID port) trains on what it has. One existence check per file."""
        cameras = [self.camera_key(v) for v in views] if views else self.cameras
        keep = _files_exist(self.data_file, self.data_path)
        for cam in cameras:
            keep &= _files_exist(self.video_file[cam], lambda row, cam=cam: self.video_path(row, cam))
        if not keep.all():
            log.warning(
                "%s: %d of %d episodes have missing files and are left out", self.root, (~keep).sum(), len(keep)
            )
        return [EpisodeRef(self.root, int(e)) for e in self.episode_index[keep]]

    def row_of(self, episode_index: int) -> int:
        row = int(np.searchsorted(self.episode_index, episode_index))
        if row >= len(self) or self.episode_index[row] != episode_index:
            raise LeRobotError(f"{self.root}: no episode {episode_index}")
        return row

    def camera_key(self, view: str) -> str:
        """The video feature for a camera view: its full key, its name after `observation.images.`, or a DROID
        metadata key (`left_mp4_path`) of an exported dataset."""
        for key in (view, IMAGE_PREFIX + view, IMAGE_PREFIX + view_name(view)):
            if key in self.cameras:
                return key
        raise LeRobotError(f"{self.root / 'meta' / 'info.json'}: no camera {view!r} (video features: {self.cameras})")

    def episode(self, episode_index: int, view: str) -> LeRobotEpisode:
        row, camera = self.row_of(episode_index), self.camera_key(view)
        return LeRobotEpisode(self, row, camera, int(self.length[row]), self.fps)

    # ---------------------------------------------------------------------------------------- paths
    def data_path(self, row: int) -> Path:
        chunk, file = (int(v) for v in self.data_file[row])
        fmt = dict(chunk_index=chunk, file_index=file, episode_chunk=chunk, episode_index=file)
        return self.root / self.info["data_path"].format(**fmt)

    def video_path(self, row: int, camera: str) -> Path:
        chunk, file = (int(v) for v in self.video_file[camera][row])
        fmt = dict(chunk_index=chunk, file_index=file, episode_chunk=chunk, episode_index=file, video_key=camera)
        return self.root / self.info["video_path"].format(**fmt)

    # ---------------------------------------------------------------------------------------- reading
    def rows(self, row: int, columns: Sequence[str]) -> pa.Table:
        """The episode's rows of `columns` (plus `episode_index`), reading only the row groups that cover them."""
        path, start, n = self.data_path(row), int(self.row_start[row]), int(self.length[row])
        cols = list(dict.fromkeys([*columns, "episode_index"]))
        try:
            with pq.ParquetFile(path) as pf:
                table = self._read_range(pf, path, cols, start, n, row)
        except (OSError, pa.ArrowException) as e:
            raise LeRobotError(f"{path}: unreadable parquet ({e})") from e
        episodes = table.column("episode_index").to_numpy()
        if len(table) != n or (episodes != self.episode_index[row]).any():
            raise LeRobotError(f"{path}: rows {start}..{start + n} are not episode {self.episode_index[row]}")
        return table

    def _read_range(self, pf: pq.ParquetFile, path: Path, cols: list[str], start: int, n: int, row: int) -> pa.Table:
        """Rows start..start+n of `cols`, from the row groups that hold them."""
        missing = [c for c in cols if c not in pf.schema_arrow.names]
        if missing:
            raise LeRobotError(f"{path}: no column {missing[0]!r} (has {pf.schema_arrow.names})")
        groups, offset, first = [], 0, 0
        for g in range(pf.metadata.num_row_groups):
            size = pf.metadata.row_group(g).num_rows
            if offset + size > start and offset < start + n:
                first = first if groups else offset
                groups.append(g)
            offset += size
        if not groups or offset < start + n:
            raise LeRobotError(f"{path}: {offset} rows, episode {self.episode_index[row]} needs {start}..{start + n}")
        return pf.read_row_groups(groups, columns=cols).slice(start - first, n)

    def states(self, row: int, idx: Sequence[int] | None = None) -> np.ndarray:
        m = self.mapping
        table = self.rows(row, [m.pose_key, m.gripper_key])
        path = self.data_path(row)
        pose = column_array(table, m.pose_key, path)
        grip = column_array(table, m.gripper_key, path)
        states = m.to_states(pose, grip, path)
        return states if idx is None else states[np.asarray(idx, dtype=np.int64)]

    def frames(self, row: int, camera: str, idx: Sequence[int]) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.length[row]):
            raise LeRobotError(f"episode {self.episode_index[row]}: frames {idx} outside 0..{self.length[row] - 1}")
        numbers = self.video_start[camera][row] + idx
        return read_frames_at(self.video_path(row, camera), numbers.tolist(), self.fps)


def _files_exist(files: np.ndarray, path_of) -> np.ndarray:
    """Per row: does the file of its (chunk, file) pair exist (each distinct pair checked once)."""
    pairs, inverse = np.unique(files, axis=0, return_inverse=True)
    first = {tuple(pair): int(np.flatnonzero(inverse.reshape(-1) == k)[0]) for k, pair in enumerate(pairs)}
    exists = np.array([path_of(first[tuple(pair)]).is_file() for pair in pairs], dtype=bool)
    return exists[inverse.reshape(-1)]


def _read_columns(path: Path, columns: list[str]) -> pa.Table:
    try:
        names = pq.read_schema(path).names
        missing = [c for c in columns if c not in names]
        if missing:
            raise LeRobotError(f"{path}: no column {missing[0]!r}")
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as e:
        raise LeRobotError(f"{path}: unreadable parquet ({e})") from e


def open_sources(
    roots: Sequence[str | Path | LeRobotSource], mapping: KeyMapping | None = None
) -> list[LeRobotSource]:
    """One `LeRobotSource` per dataset root (opened ones pass through; a clear error for one that is not a dataset)."""
    if isinstance(roots, str | Path | LeRobotSource):
        roots = [roots]
    if not roots:
        raise LeRobotError("no LeRobot dataset roots given")
    return [r if isinstance(r, LeRobotSource) else LeRobotSource(r, mapping) for r in roots]
