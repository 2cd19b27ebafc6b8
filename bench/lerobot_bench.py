"""LeRobot reader start-up time and peak memory on a generated DROID-port-like dataset (v3.0, 10,000 episodes).

    .venv/bin/python bench/lerobot_bench.py [--episodes 10000] [--root /tmp/lerobot_bench] [--json out.json]

The dataset has the DROID port's keys, fps 15, three 180x320 cameras and episodes of 100-400 frames (about 2.5
million rows in 10 data files, one row group per episode, as LeRobot writes them). The videos are shared and short:
every episode points at the start of one 400-frame AV1 file per camera, so generating it takes seconds, not hours.
Each measurement runs in a fresh process: start-up (open the roots, read the episode tables, probe one episode) of
the AC clip dataset and the pretraining video dataset, peak RSS above the process after its imports, and the time
of a few clips at the reference settings (8 frames at 4 fps, 256 px crop).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CAMERAS = ("exterior_1_left", "exterior_2_left", "wrist_left")
FPS, VIDEO_FRAMES, PER_FILE = 15, 400, 1000


def _video(path: Path) -> None:
    from vjepa2_core.data.lerobot.av_video import AV1Writer

    v, u = np.mgrid[0:180, 0:320]
    writer = AV1Writer(path, FPS, 320, 180)
    for k in range(VIDEO_FRAMES):
        frame = np.stack([(u + 3 * k) % 256, (v + k) % 256, np.full_like(u, 100)], -1).astype(np.uint8)
        writer.write(frame[None])
    writer.close()


def _data_file(path: Path, lengths: np.ndarray, first_episode: int, first_index: int, rng) -> None:
    vec6 = pa.list_(pa.float32(), 6)
    schema = pa.schema(
        [
            ("observation.state.cartesian_position", vec6),
            ("observation.state.gripper_position", pa.float32()),
            ("timestamp", pa.float32()),
            ("frame_index", pa.int64()),
            ("episode_index", pa.int64()),
            ("index", pa.int64()),
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, schema) as writer:
        for k, n in enumerate(lengths):
            pose = (np.cumsum(rng.normal(0, 0.01, (n, 6)), 0) + [0.5, 0, 0.3, 3.0, 0, 0]).astype(np.float32)
            cols = [
                pa.FixedSizeListArray.from_arrays(pa.array(pose.reshape(-1)), 6),
                pa.array(rng.uniform(0, 1, n).astype(np.float32)),
                pa.array(np.arange(n, dtype=np.float32) / FPS),
                pa.array(np.arange(n)),
                pa.array(np.full(n, first_episode + k)),
                pa.array(first_index + np.arange(n)),
            ]
            first_index += n
            writer.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=n)


def generate(root: Path, episodes: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(100, VIDEO_FRAMES + 1, episodes)
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    video = root / f"videos/observation.images.{CAMERAS[0]}/chunk-000/file-000.mp4"
    _video(video)
    for cam in CAMERAS[1:]:
        dst = root / f"videos/observation.images.{cam}/chunk-000/file-000.mp4"
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(video.read_bytes())
    file_of = np.arange(episodes) // PER_FILE
    for f in range(int(file_of.max()) + 1):
        sel = np.flatnonzero(file_of == f)
        _data_file(root / f"data/chunk-000/file-{f:03d}.parquet", lengths[sel], int(sel[0]), int(starts[sel[0]]), rng)
    row_start = starts - starts[file_of * PER_FILE]
    table = {
        "episode_index": np.arange(episodes),
        "length": lengths,
        "data/chunk_index": np.zeros(episodes, int),
        "data/file_index": file_of,
        "dataset_from_index": row_start,
        "dataset_to_index": row_start + lengths,
    }
    for cam in CAMERAS:
        key = f"videos/observation.images.{cam}"
        table |= {f"{key}/chunk_index": np.zeros(episodes, int), f"{key}/file_index": np.zeros(episodes, int)}
        table |= {f"{key}/from_timestamp": np.zeros(episodes), f"{key}/to_timestamp": lengths / FPS}
    (root / "meta/episodes/chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(table), root / "meta/episodes/chunk-000/file-000.parquet")
    feats = {
        "observation.state.cartesian_position": {"dtype": "float32", "shape": [6]},
        "observation.state.gripper_position": {"dtype": "float32", "shape": [1]},
    }
    feats |= {f"observation.images.{c}": {"dtype": "video", "shape": [180, 320, 3]} for c in CAMERAS}
    info = {
        "codebase_version": "v3.0",
        "fps": FPS,
        "features": feats,
        "total_episodes": episodes,
        "total_frames": int(lengths.sum()),
        "chunks_size": 1000,
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
    }
    (root / "meta/info.json").write_text(json.dumps(info))
    return {"episodes": episodes, "frames": int(lengths.sum()), "data_files": int(file_of.max()) + 1}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(root: str, kind: str, clips: int) -> dict:
    """One measurement in this (fresh) process."""
    from vjepa2_core.data.lerobot.datasets import LeRobotClipDataset, LeRobotVideoDataset
    from vjepa2_core.data.video_dataset import VideoTrainTransform

    base = _peak_mb()
    t0 = time.perf_counter()
    if kind == "ac":
        ds = LeRobotClipDataset(root, frames_per_clip=8, fps=4, crop_size=256, camera_views=list(CAMERAS))
    else:
        ds = LeRobotVideoDataset([root], [16], VideoTrainTransform(256), fps=4, camera_views=[])
    startup = time.perf_counter() - t0
    after_startup = _peak_mb()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for i in rng.integers(0, len(ds), clips):
        ds[int(i)]
    per_clip = (time.perf_counter() - t0) / clips
    return {
        "dataset": kind,
        "items": len(ds),
        "startup_s": round(startup, 3),
        "rss_after_imports_mb": round(base, 1),
        "peak_rss_startup_mb": round(after_startup, 1),
        "startup_mb": round(after_startup - base, 1),
        "peak_rss_after_clips_mb": round(_peak_mb(), 1),
        "s_per_clip": round(per_clip, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lerobot_bench.py", description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=10_000)
    p.add_argument("--root", default="/tmp/lerobot_bench")
    p.add_argument("--clips", type=int, default=10)
    p.add_argument("--json", default=None)
    p.add_argument("--measure", choices=("ac", "pretrain"), help=argparse.SUPPRESS)  # the child process
    args = p.parse_args(argv)
    if args.episodes < 1 or args.clips < 1:
        p.error("--episodes and --clips must be >= 1")
    if args.measure:
        print(json.dumps(measure(args.root, args.measure, args.clips)))
        return 0
    root = Path(args.root)
    info = root / "meta/info.json"
    if not info.exists() or json.loads(info.read_text())["total_episodes"] != args.episodes:
        if root.exists():
            p.error(f"{root} exists and is not a {args.episodes}-episode bench dataset; remove it or pick --root")
        t0 = time.perf_counter()
        result = {"generated": generate(root, args.episodes), "generate_s": None}
        result["generate_s"] = round(time.perf_counter() - t0, 1)
    else:
        result = {"generated": "reused", "episodes": args.episodes}
    for kind in ("ac", "pretrain"):
        cmd = [sys.executable, __file__, "--root", str(root), "--clips", str(args.clips), "--measure", kind]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        result[kind] = json.loads(out.strip().splitlines()[-1])
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
