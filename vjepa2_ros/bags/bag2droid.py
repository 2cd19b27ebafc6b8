"""Convert robot bags into the raw DROID layout that `training/train_ac.py` reads (MP4, trajectory.h5, metadata, CSV).

With `--format lerobot` the episodes go into a LeRobotDataset v3.0 instead (`vjepa2_core.data.lerobot.writer`).

Each bag is aligned on a grid at the video rate; every maximal run of consecutive usable steps (no camera, pose or
gripper gap) becomes an episode, cut at --max-length. Actions are not stored: like DROID, the training loader
derives them from consecutive states.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vjepa2_core.data.droid import DEFAULT_VIEW, INDEX_CSV, write_episode
from vjepa2_ros.bags.reader import BagError
from vjepa2_ros.bags.trajectory import AlignedBag, load_aligned
from vjepa2_ros.bags.writer import Topics


@dataclass
class ConversionReport:
    episodes: list[str] = field(default_factory=list)
    frames: int = 0
    skipped_steps: Counter = field(default_factory=Counter)
    short_runs: int = 0
    failed_bags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "episodes": self.episodes,
            "num_episodes": len(self.episodes),
            "frames": self.frames,
            "skipped_steps": dict(self.skipped_steps),
            "short_runs_dropped": self.short_runs,
            "failed_bags": self.failed_bags,
        }


def _runs(aligned: AlignedBag, max_length: int):
    """Yield lists of (step, frame) over consecutive usable steps, at most `max_length` long."""
    run: list[tuple[int, np.ndarray]] = []
    for step, frame in aligned.frames():
        if run and (step != run[-1][0] + 1 or len(run) >= max_length or frame.shape != run[-1][1].shape):
            yield run
            run = []
        run.append((step, frame))
    if run:
        yield run


def convert_bag(
    bag: str | Path,
    out: str | Path,
    report: ConversionReport,
    topics: Topics | None = None,
    rate: float = 15.0,
    tolerance: float = 0.05,
    min_length: int = 8,
    max_length: int = 2000,
    stamps: str = "receive",
    extrinsics: list[float] | None = None,
    lerobot=None,
) -> None:
    """Append the episodes of one bag to the dataset at `out` (and its CSV index).

    `extrinsics`: a fixed camera pose [x, y, z, euler xyz] in the robot base frame, stored for every frame
    (the loader's camera_frame option needs it); DROID's default of zeros otherwise. `lerobot`: a LeRobotWriter
    that takes the episodes instead (LeRobot has no extrinsics key).
    """
    aligned = load_aligned(bag, topics, rate, tolerance, stamps)
    for run in _runs(aligned, max_length):
        if len(run) < min_length:
            report.short_runs += 1
            continue
        steps = [s for s, _ in run]
        states = aligned.states[steps]
        meta = {
            "source_bag": str(Path(bag).resolve()),
            "first_step": steps[0],
            "start_time_ns": int(aligned.times[steps[0]]),
            "topics": vars(aligned.topics),
        }
        extr = None if extrinsics is None else np.tile(np.asarray(extrinsics, dtype=np.float64), (len(run), 1))
        frames = np.stack([f for _, f in run])
        if lerobot is not None:
            from vjepa2_core.data.lerobot.mapping import view_name

            episode = lerobot.add_episode({view_name(DEFAULT_VIEW): frames}, states[:, :6], states[:, 6])
            report.episodes.append(f"{out}#episode_{episode:06d}")
        else:
            path = write_episode(out, frames, states[:, :6], states[:, 6], extrinsics=extr, fps=rate, metadata=meta)
            report.episodes.append(str(path))
        report.frames += len(run)
    report.skipped_steps.update(aligned.skip_counts())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vjepa2-bag2droid", description=__doc__.splitlines()[0])
    p.add_argument("bags", nargs="+", help="rosbag2 directories (MCAP or sqlite3)")
    p.add_argument("--out", required=True, help=f"dataset root (episodes + {INDEX_CSV})")
    p.add_argument("--image-topic", default=Topics.image)
    p.add_argument("--pose-topic", default=Topics.pose)
    p.add_argument("--gripper-topic", default=Topics.gripper, help='"" for a robot without gripper')
    p.add_argument("--rate", type=float, default=15.0, help="video / state rate of the episodes (Hz)")
    p.add_argument("--tolerance", type=float, default=0.05, help="max time distance (s) of a sample to its step")
    p.add_argument("--stamps", choices=("receive", "header"), default="receive")
    p.add_argument("--min-length", type=int, default=8, help="drop shorter runs (a training clip needs frames)")
    p.add_argument("--max-length", type=int, default=2000, help="cut longer runs into several episodes")
    p.add_argument(
        "--camera-extrinsics",
        type=float,
        nargs=6,
        metavar=("X", "Y", "Z", "ROLL", "PITCH", "YAW"),
        help="fixed camera pose in the robot base frame (m, rad), stored per frame",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--format", choices=("droid", "lerobot"), default="droid", help="lerobot: a LeRobotDataset v3.0")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.min_length < 2 or args.max_length < args.min_length:
        print("vjepa2-bag2droid: error: need 2 <= --min-length <= --max-length", file=sys.stderr)
        return 2
    lerobot = None
    if args.format == "lerobot":
        from vjepa2_core.data.lerobot.writer import LeRobotWriter

        try:
            lerobot = LeRobotWriter(args.out, args.rate)
        except (ValueError, FileExistsError) as err:
            print(f"vjepa2-bag2droid: error: {err}", file=sys.stderr)
            return 2
    topics = Topics(image=args.image_topic, pose=args.pose_topic, gripper=args.gripper_topic, action="")
    report = ConversionReport()
    for bag in args.bags:
        try:
            convert_bag(
                bag,
                args.out,
                report,
                topics,
                args.rate,
                args.tolerance,
                args.min_length,
                args.max_length,
                args.stamps,
                args.camera_extrinsics,
                lerobot,
            )
        except (BagError, ValueError) as err:
            report.failed_bags[bag] = str(err)
            print(f"vjepa2-bag2droid: skipping {bag}: {err}", file=sys.stderr)
    if lerobot is not None:
        lerobot.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        where = "LeRobotDataset v3.0" if lerobot is not None else f"index {INDEX_CSV}"
        print(f"wrote {len(report.episodes)} episodes ({report.frames} frames) to {args.out}; {where}")
        if report.skipped_steps or report.short_runs:
            print(f"skipped steps: {dict(report.skipped_steps)}; short runs dropped: {report.short_runs}")
    if report.failed_bags:
        return 1
    return 0 if report.episodes else 1


if __name__ == "__main__":
    sys.exit(main())
