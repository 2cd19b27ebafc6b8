"""LeRobotDataset v3.0 writer: our episodes (frames, xyz + Euler 'xyz' pose, gripper) with DROID-port key names.

The layout, `meta/info.json`, parquet schemas and video timing follow what the real `lerobot` library (0.4.4)
writes (checked against `../shared/data/lerobot_tiny` in the tests): episodes packed back to back in
`data/chunk-000/file-000.parquet` (one row group per episode) and in one AV1 MP4 per camera, per-episode rows in
`meta/episodes/`, tasks in `meta/tasks.parquet`, statistics in `meta/stats.json`. `action` is our 7-D action, the
pose difference of consecutive states (zero on the last frame); `action.cartesian_position` the next pose.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from vjepa2_core.data.lerobot.av_video import AV1Writer
from vjepa2_core.data.lerobot.config import GRIPPER_KEY, POSE_KEY
from vjepa2_core.data.lerobot.mapping import IMAGE_PREFIX
from vjepa2_core.data.lerobot.stats import aggregate_stats, feature_stats, image_stats
from vjepa2_core.planning.poses import pose_diff

DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
CHUNKS_SIZE, DATA_MB, VIDEO_MB = 1000, 100, 200  # LeRobot's defaults
POSE_AXES = ["x", "y", "z", "roll", "pitch", "yaw"]
FLAGS = ("is_first", "is_last", "is_terminal")
INDEX_COLUMNS = ("frame_index", "episode_index", "index", "task_index")


def _vector(dtype: str, axes: list[str]) -> dict:
    return {"dtype": dtype, "shape": [len(axes)], "names": {"axes": axes}}


def features(views: Mapping[str, tuple[int, int]], fps: int) -> dict:
    """info.json `features` in LeRobot's order: flags, text, states, cameras, actions, then LeRobot's defaults."""
    scalar = {"dtype": "float32", "shape": [1], "names": None}
    feats: dict = {k: {"dtype": "bool", "shape": [1], "names": None} for k in FLAGS}
    feats["language_instruction"] = {"dtype": "string", "shape": [1], "names": None}
    feats[GRIPPER_KEY] = _vector("float32", ["gripper"])
    feats[POSE_KEY] = _vector("float32", POSE_AXES)
    feats["observation.state"] = _vector("float32", [*POSE_AXES, "gripper"])
    for view, (h, w) in views.items():
        info = {"video.height": h, "video.width": w, "video.codec": "av1", "video.pix_fmt": "yuv420p"}
        info |= {"video.is_depth_map": False, "video.fps": fps, "video.channels": 3, "has_audio": False}
        names = ["height", "width", "channels"]
        feats[IMAGE_PREFIX + view] = {"dtype": "video", "shape": [h, w, 3], "names": names, "info": info}
    feats["action.gripper_position"] = _vector("float32", ["gripper"])
    feats["action.cartesian_position"] = _vector("float32", POSE_AXES)
    feats["action"] = _vector("float32", [f"d{a}" for a in POSE_AXES] + ["dgripper"])
    feats["timestamp"] = scalar
    feats |= {k: {"dtype": "int64", "shape": [1], "names": None} for k in INDEX_COLUMNS}
    return feats


def arrow_schema(feats: dict) -> pa.Schema:
    """Scalar columns for shape-[1] features, fixed-size lists for vectors, plus the `huggingface` metadata."""
    fields, hf = [], {}
    kinds = {"float32": pa.float32(), "int64": pa.int64(), "bool": pa.bool_(), "string": pa.string()}
    for key, f in feats.items():
        if f["dtype"] == "video":
            continue
        value = {"dtype": f["dtype"], "_type": "Value"}
        if f["shape"] == [1]:
            fields.append(pa.field(key, kinds[f["dtype"]]))
            hf[key] = value
        else:
            fields.append(pa.field(key, pa.list_(kinds[f["dtype"]], f["shape"][0])))
            hf[key] = {"feature": value, "length": f["shape"][0], "_type": "List"}
    meta = {"huggingface": json.dumps({"info": {"features": hf}})}
    return pa.schema(fields, metadata=meta)


def episode_columns(cartesian: np.ndarray, gripper: np.ndarray, fps: int, episode: int, start: int, task: int):
    """The data rows of one episode as {column: numpy array}."""
    n = len(cartesian)
    states = torch.as_tensor(np.c_[cartesian, gripper], dtype=torch.float64)
    action = np.zeros((n, 7))
    action[:-1] = pose_diff(states[:-1], states[1:]).numpy()
    nxt = np.r_[np.arange(1, n), n - 1]  # the commanded next pose; the last frame holds its own
    last = np.arange(n) == n - 1
    return {
        "is_first": np.arange(n) == 0,
        "is_last": last,
        "is_terminal": last,
        "language_instruction": None,
        GRIPPER_KEY: gripper.astype(np.float32),
        POSE_KEY: cartesian.astype(np.float32),
        "observation.state": states.numpy().astype(np.float32),
        "action.gripper_position": gripper[nxt].astype(np.float32),
        "action.cartesian_position": cartesian[nxt].astype(np.float32),
        "action": action.astype(np.float32),
        "timestamp": (np.arange(n) / fps).astype(np.float32),
        "frame_index": np.arange(n, dtype=np.int64),
        "episode_index": np.full(n, episode, dtype=np.int64),
        "index": np.arange(start, start + n, dtype=np.int64),
        "task_index": np.full(n, task, dtype=np.int64),
    }


def _arrow_column(values, field: pa.Field, n: int, text: str) -> pa.Array:
    if values is None:
        return pa.array([text] * n, type=field.type)
    if pa.types.is_fixed_size_list(field.type):
        flat = pa.array(np.ascontiguousarray(values).reshape(-1), type=field.type.value_type)
        return pa.FixedSizeListArray.from_arrays(flat, field.type.list_size)
    return pa.array(values, type=field.type)


class LeRobotWriter:
    """Append episodes, then `close()` writes the metadata. Use as a context manager."""

    def __init__(
        self,
        root: str | Path,
        fps: float,
        views: Mapping[str, tuple[int, int]] | None = None,
        robot_type: str = "Franka",
    ):
        """`views` {name: (height, width)}; None: those of the first episode. LeRobot's fps is an integer."""
        if fps != int(fps) or fps < 1:
            raise ValueError(f"a LeRobot dataset needs a whole fps, got {fps}")
        self.root, self.fps, self.robot_type = Path(root), int(fps), robot_type
        if (self.root / "meta" / "info.json").exists():
            raise FileExistsError(f"{self.root} already holds a LeRobot dataset")
        self.views: dict[str, tuple[int, int]] = {}
        if views is not None:
            self._set_views(views)
        self.episodes: list[dict] = []
        self._stats: list[dict] = []
        self.tasks: dict[str, int] = {}
        self.frames = 0
        self._data: pq.ParquetWriter | None = None
        self._data_file, self._data_bytes = -1, 0
        self._videos: dict[str, AV1Writer] = {}

    def _set_views(self, views: Mapping[str, tuple[int, int]]) -> None:
        if not views:
            raise ValueError("a LeRobot dataset needs at least one camera view")
        self.views = {str(v): (int(h), int(w)) for v, (h, w) in views.items()}
        self.features = features(self.views, self.fps)
        self.schema = arrow_schema(self.features)
        self._video_file = {v: -1 for v in self.views}

    def __enter__(self) -> LeRobotWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add_episode(
        self, frames: Mapping[str, np.ndarray], cartesian: np.ndarray, gripper: np.ndarray, task: str = ""
    ) -> int:
        """Write one episode: frames {view: uint8 [T,H,W,3]}, cartesian [T,6] (xyz + Euler 'xyz'), gripper [T]."""
        cartesian = np.asarray(cartesian, dtype=np.float64)
        gripper = np.asarray(gripper, dtype=np.float64).reshape(-1)
        n = len(cartesian)
        if cartesian.shape != (n, 6) or gripper.shape != (n,) or n < 1:
            raise ValueError(f"cartesian must be [T,6] and gripper [T], got {cartesian.shape} and {gripper.shape}")
        if not self.views:
            self._set_views({v: np.shape(clip)[1:3] for v, clip in frames.items()})
        if set(frames) != set(self.views):
            raise ValueError(f"frames for views {sorted(frames)}, the dataset has {sorted(self.views)}")
        for view, clip in frames.items():
            if clip.shape != (n, *self.views[view], 3) or clip.dtype != np.uint8:
                raise ValueError(f"view {view!r}: frames must be uint8 [{n},{self.views[view]},3], got {clip.shape}")
        episode = len(self.episodes)
        task_index = self.tasks.setdefault(task, len(self.tasks))
        cols = episode_columns(cartesian, gripper, self.fps, episode, self.frames, task_index)
        row = {"episode_index": episode, "tasks": [task], "length": n, **self._write_rows(cols, task)}
        for view, clip in frames.items():
            row |= self._write_video(view, clip)
        row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
        stats = self._episode_stats(cols, frames)
        row |= {f"stats/{k}/{name}": v for k, st in stats.items() for name, v in st.items()}
        self.episodes.append(row)
        self._stats.append(stats)
        self.frames += n
        return episode

    def _write_rows(self, cols: dict, task: str) -> dict:
        n = len(cols["index"])
        table = pa.Table.from_arrays(
            [_arrow_column(cols[f.name], f, n, task) for f in self.schema], schema=self.schema
        )
        if self._data is None or self._data_bytes > DATA_MB * 2**20:
            self._close_data()
            self._data_file += 1
            path = self.root / DATA_PATH.format(chunk_index=0, file_index=self._data_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._data, self._data_bytes, self._data_rows = pq.ParquetWriter(path, self.schema), 0, 0
        self._data.write_table(table, row_group_size=n)  # one row group per episode: readers fetch only theirs
        self._data_bytes += table.nbytes
        start = self._data_rows
        self._data_rows += n
        return {
            "data/chunk_index": 0,
            "data/file_index": self._data_file,
            "dataset_from_index": start,
            "dataset_to_index": start + n,
        }

    def _write_video(self, view: str, clip: np.ndarray) -> dict:
        key, writer = IMAGE_PREFIX + view, self._videos.get(view)
        if writer is None or writer.size_bytes() > VIDEO_MB * 2**20:
            if writer is not None:
                writer.close()
            self._video_file[view] += 1
            path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=self._video_file[view])
            writer = self._videos[view] = AV1Writer(path, self.fps, clip.shape[2], clip.shape[1])
        start = writer.frames_written
        writer.write(clip)
        return {
            f"videos/{key}/chunk_index": 0,
            f"videos/{key}/file_index": self._video_file[view],
            f"videos/{key}/from_timestamp": start / self.fps,
            f"videos/{key}/to_timestamp": writer.frames_written / self.fps,
        }

    def _episode_stats(self, cols: dict, frames: Mapping[str, np.ndarray]) -> dict:
        stats = {}
        for key, f in self.features.items():
            if f["dtype"] == "video":
                stats[key] = image_stats(frames[key[len(IMAGE_PREFIX) :]])
            elif f["dtype"] != "string":
                stats[key] = feature_stats(np.asarray(cols[key]).reshape(len(cols["index"]), -1))
        return stats

    def _close_data(self) -> None:
        if self._data is not None:
            self._data.close()
            self._data = None

    def close(self) -> None:
        """Finish the files and write `meta/` (info.json, episodes, tasks, stats); nothing without episodes."""
        self._close_data()
        for writer in self._videos.values():
            writer.close()
        self._videos.clear()
        if not self.episodes:
            return
        meta = self.root / "meta"
        (meta / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self.episodes), self.root / EPISODES_PATH)
        write_tasks(meta / "tasks.parquet", list(self.tasks))
        (meta / "stats.json").write_text(json.dumps(aggregate_stats(self._stats), indent=4))
        (meta / "info.json").write_text(json.dumps(self.info(), indent=4))

    def info(self) -> dict:
        n = len(self.episodes)
        return {
            "codebase_version": "v3.0",
            "robot_type": self.robot_type,
            "total_episodes": n,
            "total_frames": self.frames,
            "total_tasks": len(self.tasks),
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": DATA_MB,
            "video_files_size_in_mb": VIDEO_MB,
            "fps": self.fps,
            "splits": {"train": f"0:{n}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "features": self.features,
        }


def write_tasks(path: Path, tasks: Sequence[str]) -> None:
    """meta/tasks.parquet as pandas writes it (task text as the index), which is how LeRobot reads it back."""
    pandas = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "str",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": None, "field_name": "__index_level_0__", "pandas_type": "object", "numpy_type": "str",
             "metadata": None},
        ],
        "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "3.1.2",
    }  # fmt: skip
    schema = pa.schema(
        [pa.field("task_index", pa.int64()), pa.field("__index_level_0__", pa.large_string())],
        metadata={"pandas": json.dumps(pandas)},
    )
    table = pa.table({"task_index": list(range(len(tasks))), "__index_level_0__": list(tasks)}, schema=schema)
    pq.write_table(table, path)
