"""Raw DROID layout: a writer (tests, simulator, rosbag converter) and the clip dataset for AC post-training.

Layout (reference `app/vjepa_droid`): a CSV whose first column lists trajectory directories; in each directory a
metadata `*.json` (the camera view key, e.g. `left_mp4_path`, holds `.../recordings/MP4/<serial>.mp4`),
`trajectory.h5` with `observation/robot_state/{cartesian_position [N,6], gripper_position [N]}` and
`observation/camera_extrinsics/<serial>_left [N,6]`, and the MP4 files under `recordings/MP4/`.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from tensordict import TensorDict

from vjepa2_core.data.feature_cache import FeatureCache, cache_key
from vjepa2_core.data.transforms import ac_train_transform
from vjepa2_core.data.video import read_frames, video_info, write_mp4
from vjepa2_core.planning.poses import euler_to_matrix, matrix_to_euler, pose_diff

log = logging.getLogger(__name__)

CARTESIAN_KEY = "observation/robot_state/cartesian_position"
GRIPPER_KEY = "observation/robot_state/gripper_position"
EXTRINSICS_KEY = "observation/camera_extrinsics/{serial}_left"
MP4_MARKER = "recordings/MP4/"
DEFAULT_VIEW = "left_mp4_path"
INDEX_CSV = "trajectories.csv"


class DROIDDataError(RuntimeError):
    """A DROID dataset or episode that cannot be used (with the path and the reason)."""


# ----------------------------------------------------------------------------------------------- writer


def write_episode(
    root: str | Path,
    frames: np.ndarray | Mapping[str, np.ndarray],
    cartesian: np.ndarray,
    gripper: np.ndarray,
    *,
    extrinsics: np.ndarray | Mapping[str, np.ndarray] | None = None,
    fps: float = 15.0,
    name: str | None = None,
    serials: Mapping[str, str] | None = None,
    metadata: Mapping | None = None,
    index_csv: str | None = INDEX_CSV,
) -> Path:
    """Write one episode in the raw DROID layout under `root` and append its directory to `root/index_csv`.

    frames: RGB uint8 [T,H,W,3] for the `left_mp4_path` view, or {view_key: frames}; cartesian [T,6] (xyz + euler
    'xyz'), gripper [T] in [0,1]; extrinsics [T,6] (or {view_key: [T,6]}, default zeros). Returns the directory.
    """
    views = dict(frames) if isinstance(frames, Mapping) else {DEFAULT_VIEW: frames}
    cartesian = np.asarray(cartesian, dtype=np.float64)
    gripper = np.asarray(gripper, dtype=np.float64).reshape(-1)
    n = len(cartesian)
    if cartesian.ndim != 2 or cartesian.shape[1] != 6:
        raise ValueError(f"cartesian must be [T,6] (xyz + euler xyz), got {cartesian.shape}")
    if gripper.shape != (n,):
        raise ValueError(f"gripper must have {n} entries to match cartesian, got {gripper.shape}")
    if not np.isfinite(cartesian).all() or not np.isfinite(gripper).all():
        raise ValueError("cartesian and gripper must be finite")
    for view, clip in views.items():
        if len(clip) != n:
            raise ValueError(f"view {view!r} has {len(clip)} frames but the states have {n}")
    serials = dict(serials or {})
    for i, view in enumerate(views):
        serials.setdefault(view, f"{10000001 + i}")
    if extrinsics is None:
        extr = {view: np.zeros((n, 6)) for view in views}
    elif isinstance(extrinsics, Mapping):
        extr = {view: np.asarray(extrinsics[view], dtype=np.float64) for view in views}
    else:
        extr = {view: np.asarray(extrinsics, dtype=np.float64) for view in views}
    for view, e in extr.items():
        if e.shape != (n, 6):
            raise ValueError(f"extrinsics for {view!r} must be [{n},6], got {e.shape}")

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ep_dir = _new_episode_dir(root, name)
    mp4_dir = ep_dir / MP4_MARKER
    mp4_dir.mkdir(parents=True)
    meta = {"uuid": ep_dir.name, "trajectory_length": n, "fps": fps, **dict(metadata or {})}
    with h5py.File(ep_dir / "trajectory.h5", "w") as h5:
        h5.create_dataset(CARTESIAN_KEY, data=cartesian)
        h5.create_dataset(GRIPPER_KEY, data=gripper)
        for view, clip in views.items():
            serial = serials[view]
            h5.create_dataset(EXTRINSICS_KEY.format(serial=serial), data=extr[view])
            write_mp4(mp4_dir / f"{serial}.mp4", np.asarray(clip), fps)
            meta[view] = f"{ep_dir.name}/{MP4_MARKER}{serial}.mp4"
    (ep_dir / f"metadata_{ep_dir.name}.json").write_text(json.dumps(meta, indent=1))
    if index_csv:
        with open(root / index_csv, "a") as f:
            f.write(f"{ep_dir.resolve()}\n")
    return ep_dir


def _new_episode_dir(root: Path, name: str | None) -> Path:
    """Create the episode directory exclusively (several writers may share one root)."""
    if name is not None:
        path = root / name
        path.mkdir()
        return path
    i = sum(1 for _ in root.glob("episode_*"))
    while True:
        path = root / f"episode_{i:06d}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            i += 1


def read_index(sources: str | Path | Sequence[str | Path]) -> list[Path]:
    """Trajectory directories from one or more CSV files (first column; relative paths are relative to the CSV)."""
    sources = [sources] if isinstance(sources, str | Path) else list(sources)
    dirs: list[Path] = []
    for src in sources:
        src = Path(src)
        if src.is_dir():
            dirs.append(src)
            continue
        if not src.is_file():
            raise DROIDDataError(f"dataset index {src} does not exist")
        with open(src, newline="") as f:
            for row in csv.reader(f, delimiter=" "):
                if row and row[0].strip():
                    p = Path(row[0].strip())
                    dirs.append(p if p.is_absolute() else src.parent / p)
    return dirs


# ----------------------------------------------------------------------------------------------- reader


@dataclass
class Episode:
    """Paths and header facts of one trajectory directory (no frames decoded)."""

    path: Path
    video: Path
    serial: str
    num_frames: int
    video_fps: float


def open_episode(path: Path, view: str) -> Episode:
    """Resolve metadata, video and h5 of an episode; raises DROIDDataError naming the problem."""
    metas = sorted(path.glob("*.json"))
    if not metas:
        raise DROIDDataError(f"{path}: no metadata *.json")
    try:
        meta = json.loads(metas[0].read_text())
    except (OSError, ValueError) as e:
        raise DROIDDataError(f"{metas[0]}: unreadable metadata ({e})") from e
    if view not in meta:
        raise DROIDDataError(f"{metas[0]}: no camera view {view!r} (has {sorted(meta)})")
    mp4_name = str(meta[view]).split(MP4_MARKER)[-1]
    video = path / MP4_MARKER / mp4_name
    if not video.is_file():
        raise DROIDDataError(f"{path}: video {video} missing")
    if not (path / "trajectory.h5").is_file():
        raise DROIDDataError(f"{path}: trajectory.h5 missing")
    try:
        count, fps = video_info(video)
    except Exception as e:
        raise DROIDDataError(f"{path}: {e}") from e
    return Episode(path, video, Path(mp4_name).stem, count, fps)


def frame_step(video_fps: float, fps: float) -> int:
    """Reference frame step for sampling a video at `fps`: ceil(video_fps / fps), at least 1."""
    return max(1, math.ceil(video_fps / fps))


def clip_indices(num_frames: int, step: int, frames_per_clip: int, rng: np.random.Generator):
    """Reference clip sampling: end uniform in [span, N-1], frames start::step."""
    span = frames_per_clip * step
    if num_frames - 1 < span:
        raise DROIDDataError(
            f"too short: {num_frames} frames, a clip of {frames_per_clip} at step {step} needs {span + 1}"
        )
    end = int(rng.integers(span, num_frames))
    return np.arange(end - span, end, step)[:frames_per_clip]


def poses_to_camera_frame(states: torch.Tensor, extrinsics: torch.Tensor) -> torch.Tensor:
    """inv(T_extr) @ T_pose for [..., 7] states and [..., 6] camera extrinsics (xyz + euler); gripper unchanged."""
    r_cam = euler_to_matrix(extrinsics[..., 3:6])
    r_pose = euler_to_matrix(states[..., 3:6])
    r_cam_t = r_cam.transpose(-1, -2)
    xyz = (r_cam_t @ (states[..., :3] - extrinsics[..., :3]).unsqueeze(-1)).squeeze(-1)
    euler = matrix_to_euler(r_cam_t @ r_pose)
    return torch.cat([xyz, euler, states[..., 6:]], dim=-1)


def load_clip(ep: Episode, idx: np.ndarray, camera_frame: bool = False, decode: bool = True) -> dict:
    """States [T,7], actions [T-1,7], extrinsics [T,6], indices [T] at frame indices `idx`, and (if `decode`)
    the frames uint8 [T,H,W,3]."""
    try:
        with h5py.File(ep.path / "trajectory.h5", "r") as h5:
            cart, grip = h5[CARTESIAN_KEY], h5[GRIPPER_KEY]
            if cart.ndim != 2 or cart.shape[1] != 6 or len(cart) <= idx[-1] or len(grip) <= idx[-1]:
                raise DROIDDataError(
                    f"{ep.path}: states {cart.shape} / gripper {grip.shape} do not cover frame {idx[-1]}"
                )
            states = np.concatenate([cart[idx], np.asarray(grip[idx]).reshape(-1, 1)], axis=1)
            ekey = EXTRINSICS_KEY.format(serial=ep.serial)
            if ekey in h5:
                extr = np.asarray(h5[ekey][idx], dtype=np.float64)
            elif camera_frame:
                raise DROIDDataError(f"{ep.path}: camera_frame needs {ekey}")
            else:
                extr = np.zeros((len(idx), 6))
    except (OSError, KeyError) as e:
        raise DROIDDataError(f"{ep.path}: bad trajectory.h5 ({e})") from e
    clip = clip_from_states(states, extr, idx, camera_frame, where=ep.path)
    if decode:
        clip["frames"] = read_frames(ep.video, idx)
    return clip


def clip_from_states(
    states: np.ndarray, extrinsics: np.ndarray, idx: np.ndarray, camera_frame: bool = False, where: object = ""
) -> dict:
    """The clip's tensors from its states [T,7] and camera extrinsics [T,6]: every episode source ends here."""
    states_t = torch.as_tensor(states, dtype=torch.float64)
    extr_t = torch.as_tensor(extrinsics, dtype=torch.float64)
    if not torch.isfinite(states_t).all():
        raise DROIDDataError(f"{where}: non-finite states")
    if camera_frame:
        states_t = poses_to_camera_frame(states_t, extr_t)
    return {
        "states": states_t.float(),
        "actions": pose_diff(states_t[:-1], states_t[1:]).float(),
        "extrinsics": extr_t.float(),
        "indices": torch.as_tensor(idx, dtype=torch.long),
    }


class DROIDDataset(torch.utils.data.Dataset):
    """One random clip per trajectory per epoch, as TensorDicts (frames, states, actions, extrinsics, indices, ...).

    Sampling is a pure function of (seed, epoch, index), so runs resume exactly and workers agree. Corrupt or too
    short episodes are skipped with a warning, remembered, counted in the sample's `skipped` field, and replaced by
    another random episode, at most `max_retries` times (the reference retries forever).
    """

    def __init__(
        self,
        sources: str | Path | Sequence[str | Path],
        *,
        frames_per_clip: int = 8,
        fps: float = 4.0,
        crop_size: int = 256,
        camera_views: Sequence[str] = (DEFAULT_VIEW,),
        random_resize_scale: tuple[float, float] = (1.777, 1.777),
        random_resize_aspect_ratio: tuple[float, float] = (0.75, 1.35),
        horizontal_flip: bool = False,
        camera_frame: bool = False,
        seed: int = 0,
        max_retries: int = 10,
        episodes: Sequence[Path] | None = None,
        feature_cache: FeatureCache | None = None,
        feature_shape: tuple[int, ...] | None = None,
        frame_steps: Sequence[int] | None = None,
    ):
        self.paths = list(episodes) if episodes is not None else read_index(sources)
        if not self.paths:
            raise DROIDDataError(f"dataset {sources} lists no trajectory directories")
        if frames_per_clip < 2:
            raise ValueError(f"frames_per_clip must be >= 2 (actions are frame differences), got {frames_per_clip}")
        if not camera_views:
            raise ValueError("camera_views must name at least one metadata key, e.g. left_mp4_path")
        if frame_steps is not None and (not frame_steps or any(int(k) != k or k < 1 for k in frame_steps)):
            raise ValueError(f"frame_steps must list positive integers, got {frame_steps!r}")
        # Each clip draws its frame step from this list (overrides fps): a k-step clip's action is the whole
        # k-step move, so one predictor step learns moves of several control steps.
        self.frame_steps = [int(k) for k in frame_steps] if frame_steps is not None else None
        self.frames_per_clip, self.fps, self.crop_size = int(frames_per_clip), float(fps), int(crop_size)
        self.camera_views = list(camera_views)
        self.scale, self.ratio = tuple(random_resize_scale), tuple(random_resize_aspect_ratio)
        self.horizontal_flip, self.camera_frame = bool(horizontal_flip), bool(camera_frame)
        self.seed, self.max_retries, self.epoch = int(seed), int(max_retries), 0
        self.bad: dict[int, str] = {}
        if feature_cache is not None and (feature_shape is None or not self.deterministic_crop):
            raise ValueError(
                "a feature cache needs feature_shape and a deterministic crop (random_resize_scale above 1, "
                "no horizontal_flip): cached features must not depend on the augmentation draw"
            )
        self.feature_cache, self.feature_shape = feature_cache, feature_shape
        self._check_usable()

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def deterministic_crop(self) -> bool:
        """True when every clip of a video gets the same crop (scale > 1 makes every random try fail)."""
        return min(self.scale) > 1.0 and not self.horizontal_flip

    @property
    def num_skipped(self) -> int:
        """Episodes found unusable so far in this process."""
        return len(self.bad)

    def clip_steps(self, video_fps: float) -> list[int]:
        """Frame steps a clip of a `video_fps` video may use: `frame_steps`, else the reference step for `fps`."""
        return self.frame_steps or [frame_step(video_fps, self.fps)]

    def _check_usable(self) -> None:
        """Fail at start-up, with the reasons, when no episode can give a clip."""
        for i in range(len(self.paths)):
            try:
                self._load(i, np.random.default_rng([self.seed, 2**31 - 1, i]), probe=True)
                return
            except Exception as e:  # noqa: BLE001 - any failure makes the episode unusable
                self._mark_bad(i, e)
        reasons = "; ".join(list(self.bad.values())[:3])
        raise DROIDDataError(f"no usable episode among {len(self.paths)} (e.g. {reasons})")

    def _mark_bad(self, i: int, err: Exception) -> None:
        if i not in self.bad:
            self.bad[i] = str(err)
            log.warning("skipping episode %s: %s (%d skipped so far)", self.paths[i], err, len(self.bad))

    def _load(self, i: int, rng: np.random.Generator, probe: bool = False) -> TensorDict:
        v = int(rng.integers(len(self.camera_views)))
        ep = self.open_episode(i, self.camera_views[v])
        steps = self.clip_steps(ep.video_fps)
        step = steps[int(rng.integers(len(steps)))] if self.frame_steps else steps[0]
        idx = clip_indices(ep.num_frames, step, self.frames_per_clip, rng)
        features = None
        if self.feature_cache is not None and not probe:
            features = self.feature_cache.get(cache_key(self.paths[i], self.camera_views[v]), idx)
        clip = self.load_clip(ep, idx, decode=features is None)
        if probe:
            return TensorDict({}, batch_size=[])
        if features is None:
            frames = ac_train_transform(
                clip.pop("frames"), self.crop_size, self.scale, self.ratio, rng, self.horizontal_flip
            )
        else:  # cached: skip decoding, the trainer skips the encoder
            frames = torch.zeros(3, len(idx), self.crop_size, self.crop_size)
        out = {"frames": frames, **clip, "episode": torch.tensor(i), "view": torch.tensor(v)}
        if self.feature_cache is not None:
            out["cached"] = torch.tensor(features is not None)
            out["features"] = features if features is not None else torch.zeros(len(idx), *self.feature_shape)
        return TensorDict(out, batch_size=[])

    def open_episode(self, i: int, view: str) -> Episode:
        """Episode `i` seen through camera `view` (no frames decoded). Other layouts override this and `load_clip`."""
        return open_episode(Path(self.paths[i]), view)

    def load_clip(self, ep: Episode, idx: np.ndarray, decode: bool = True) -> dict:
        """The clip tensors (`clip_from_states`) at frame indices `idx`, with the frames when `decode`."""
        return load_clip(ep, idx, self.camera_frame, decode)

    def cache_key(self, episode: int, view: int) -> str:
        return cache_key(self.paths[episode], self.camera_views[view])

    def __getitem__(self, index: int) -> TensorDict:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        i, failures = int(index), 0
        while True:
            if i not in self.bad:
                try:
                    sample = self._load(i, rng)
                    sample["skipped"] = torch.tensor(failures)
                    return sample
                except Exception as e:  # noqa: BLE001 - a bad episode must not kill training
                    self._mark_bad(i, e)
            failures += 1
            if failures > self.max_retries:
                raise DROIDDataError(
                    f"{failures} consecutive unusable episodes while loading item {index}; "
                    f"{len(self.bad)} of {len(self.paths)} episodes are bad (last: {self.bad.get(i)})"
                )
            i = int(rng.integers(len(self.paths)))


def collate(samples: list[TensorDict]) -> TensorDict:
    """Stack per-sample TensorDicts into a batch (a module-level function so DataLoader workers can pickle it)."""
    return torch.stack(samples, dim=0)


def split_episodes(paths: Sequence[Path], holdout_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Deterministic train/held-out split of trajectory directories (at least one of each when possible)."""
    paths = list(paths)
    if holdout_fraction <= 0 or len(paths) < 2:
        return paths, []
    order = np.random.default_rng(seed).permutation(len(paths))
    n_held = min(len(paths) - 1, max(1, int(round(holdout_fraction * len(paths)))))
    held = sorted(order[:n_held].tolist())
    held_set = set(held)
    return [p for i, p in enumerate(paths) if i not in held_set], [paths[i] for i in held]
