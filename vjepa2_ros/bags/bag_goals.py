"""`vjepa2-bag-goals`: frames of a recorded demonstration as sub-goal images for `vjepa2-goal send`.

    vjepa2-bag-goals BAG --topic /camera/image_raw (--at T1,T2,... | --evenly K) --out DIR

Writes DIR/01_subgoal.png, DIR/02_subgoal.png, ..., DIR/NN_goal.png (the last one is the goal) as the frames were
recorded (decoded to RGB, lossless PNG). `--at`: the frames nearest to these times, in seconds from the bag's start;
`--evenly K`: K frames evenly spaced in time after the topic's first frame (the start pose), the last being its last
frame. MCAP and sqlite3 bags, raw (sensor_msgs/Image) and compressed (CompressedImage) camera topics.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from vjepa2_core.data.images import write_png
from vjepa2_core.data.video import VideoError
from vjepa2_ros.bags.camera_frames import camera_frames
from vjepa2_ros.bags.reader import BagError, BagReader

TIME_SLACK_S = 1e-6  # a time this close past the bag's last message is still inside it


def parse_times(text: str) -> list[float]:
    try:
        times = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--at takes seconds separated by commas, got {text!r}") from None
    if not times:
        raise argparse.ArgumentTypeError("--at needs at least one time")
    return times


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vjepa2-bag-goals", description=__doc__.split("\n")[0])
    p.add_argument("bag", help="rosbag2 directory (or .mcap / .db3 file's directory) of the demonstration")
    p.add_argument("--topic", default="/camera/image_raw", help="camera topic (Image or CompressedImage)")
    pick = p.add_mutually_exclusive_group(required=True)
    pick.add_argument("--at", type=parse_times, help="seconds from the bag's start, comma-separated, in order")
    pick.add_argument("--evenly", type=positive_int, metavar="K", help="K frames evenly spaced, the last the goal")
    p.add_argument("--out", required=True, help="directory for the PNG files")
    p.add_argument("--force", action="store_true", help="overwrite PNG files of the same names in --out")
    return p


def nearest(times: np.ndarray, targets: list[float]) -> list[int]:
    """Index of the frame nearest to each target time (the later one on a tie)."""
    idx = np.clip(np.searchsorted(times, targets), 1, len(times) - 1)
    later = times[idx] - np.asarray(targets) <= np.asarray(targets) - times[idx - 1]
    return [int(i) for i in np.where(later, idx, idx - 1)]


def pick_frames(times: np.ndarray, at: list[float] | None, evenly: int | None, duration: float) -> list[int]:
    """Indices of the chosen frames; ValueError for a time outside the bag or more frames than the topic has."""
    if at is not None:
        outside = [t for t in at if not 0.0 <= t <= duration + TIME_SLACK_S]
        if outside:
            raise ValueError(
                f"time(s) {outside} outside the bag, which lasts {duration:.3f} s (use 0..{duration:.3f})"
            )
        return nearest(times, at) if len(times) > 1 else [0] * len(at)
    if evenly > len(times) - 1:
        raise ValueError(
            f"--evenly {evenly}: the topic has only {len(times)} frames ({len(times) - 1} after the start)"
        )
    first, last = float(times[0]), float(times[-1])
    targets = [first + (last - first) * k / evenly for k in range(1, evenly + 1)]
    picked = nearest(times, targets)
    picked[-1] = len(times) - 1
    return picked


def output_paths(out: Path, count: int) -> list[Path]:
    width = max(2, len(str(count)))
    return [out / f"{i:0{width}d}_{'goal' if i == count else 'subgoal'}.png" for i in range(1, count + 1)]


def extract(args: argparse.Namespace) -> list[tuple[Path, float]]:
    """Write the chosen frames; returns (path, time from the bag's start) for each. Errors: BagError/VideoError/
    ValueError with a message for the user."""
    with BagReader(args.bag) as reader:
        duration = (reader.end_time - reader.start_time) * 1e-9
    times = np.array([t for t, _ in camera_frames(args.bag, args.topic, from_bag_start=True)])  # nothing decoded
    if not len(times):
        raise ValueError(f"topic {args.topic} has no messages in {args.bag}")
    picked = pick_frames(times, args.at, args.evenly, duration)
    paths = output_paths(Path(args.out), len(picked))
    existing = [str(p) for p in paths if p.exists()]
    if existing and not args.force:
        raise ValueError(f"refusing to overwrite {', '.join(existing)} (use --force or another --out)")
    images: dict[int, np.ndarray] = {}
    for index, (_, frame) in enumerate(camera_frames(args.bag, args.topic, from_bag_start=True)):
        if index in picked:  # decoded while the bag is open, only the chosen ones
            images[index] = frame()
    return [(write_png(path, images[index]), float(times[index])) for path, index in zip(paths, picked)]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        written = extract(args)
    except (BagError, VideoError, ValueError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    for path, t in written:
        print(f"{path}  (t = {t:.3f} s)")
    *subgoals, (goal, _) = written
    command = f"vjepa2-goal send --goal {goal}"
    if subgoals:
        command += " --subgoals " + " ".join(str(p) for p, _ in subgoals)
    print(f"send them with: {command}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
