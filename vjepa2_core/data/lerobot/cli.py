"""`python -m vjepa2_core.data.lerobot dump|export`: check a key mapping before training; export our episodes.

    python -m vjepa2_core.data.lerobot dump --config config/train/ac_tiny_cpu.yaml --set data.format=lerobot \\
        --set data.datasets=[/data/my_lerobot_set] --set data.camera_views=[wrist] --out seen.npz
    python -m vjepa2_core.data.lerobot export --datasets runs/episodes/trajectories.csv --out runs/my_lerobot_set
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from vjepa2_core.data.droid import DROIDDataError
from vjepa2_core.data.lerobot.config import LEROBOT_SCHEMA
from vjepa2_core.data.lerobot.export import export
from vjepa2_core.data.lerobot.mapping import KeyMapping
from vjepa2_core.data.lerobot.reader import open_sources
from vjepa2_core.data.video import VideoError
from vjepa2_core.training.config import ConfigError, Field, apply_overrides, load_yaml, validate

PROG = "python -m vjepa2_core.data.lerobot"
DUMP_SCHEMA = {
    "datasets": Field(list, doc="LeRobotDataset roots"),
    "camera_views": Field(list, default=[], doc="the first one is dumped (default: the dataset's first camera)"),
    "lerobot": LEROBOT_SCHEMA,
}


def data_section(config: str, overrides: list[str]) -> dict:
    """The reader's keys of a training config's `data` section (the rest of the config is not checked here)."""
    data = apply_overrides(load_yaml(config), overrides).get("data") or {}
    return validate({k: data[k] for k in DUMP_SCHEMA if k in data}, DUMP_SCHEMA, "data")


def dump(data: dict, out: str | Path, limit: int | None = None, log=print) -> dict:
    """Write states_<e> [T,7] and frames_<e> [T,H,W,3] (first camera view) for every episode, in order, to `out`."""
    arrays, n, skipped, frames_total, lo, hi, fps = {}, 0, 0, 0, None, None, set()
    for src in open_sources(data["datasets"], KeyMapping.from_config(data["lerobot"])):
        camera = src.camera_key(data["camera_views"][0]) if data["camera_views"] else src.cameras[0]
        fps.add(src.fps)
        for e in src.episode_index:
            if limit is not None and n + skipped >= limit:
                break
            try:
                ep = src.episode(int(e), camera)
                states, frames = ep.states(), ep.frames(np.arange(ep.num_frames))
            except (DROIDDataError, VideoError) as err:
                skipped += 1
                log(f"skipping episode {e} of {src.root}: {err}", file=sys.stderr)
                continue
            arrays[f"states_{n}"], arrays[f"frames_{n}"] = states, frames
            lo = states.min(0) if lo is None else np.minimum(lo, states.min(0))
            hi = states.max(0) if hi is None else np.maximum(hi, states.max(0))
            n, frames_total = n + 1, frames_total + len(states)
    np.savez_compressed(out, **arrays)
    summary = {"episodes": n, "skipped": skipped, "frames": frames_total, "fps": sorted(fps)}
    if lo is not None:
        summary["state_min"], summary["state_max"] = lo.round(4).tolist(), hi.round(4).tolist()
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="what the loader sees: states and first-camera frames of every episode")
    d.add_argument("--config", required=True, help="training config (its data section)")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    d.add_argument("--out", required=True, help="output .npz")
    d.add_argument("--episodes", type=int, default=None, help="only the first N episodes")
    e = sub.add_parser("export", help="DROID-layout episodes -> LeRobotDataset v3.0")
    e.add_argument("--datasets", nargs="+", required=True, help="CSV indexes or episode directories")
    e.add_argument("--out", required=True, help="new dataset root")
    e.add_argument("--views", nargs="*", default=None, help="DROID view keys (default: every camera)")
    e.add_argument("--task", default="", help="task text stored with every episode")
    e.add_argument("--robot-type", default="Franka")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "dump" and args.episodes is not None and args.episodes < 1:
        parser.error("--episodes must be >= 1")
    if args.command == "export" and (Path(args.out) / "meta" / "info.json").exists():
        parser.error(f"{args.out} already holds a LeRobot dataset")
    try:
        if args.command == "dump":
            summary = dump(data_section(args.config, args.set), args.out, args.episodes)
            print(f"dumped {summary} to {args.out}")
            return 0 if summary["episodes"] and not summary["skipped"] else 1
        report = export(args.datasets, args.out, args.views, args.task, args.robot_type)
    except ConfigError as err:
        parser.error(str(err))
    except DROIDDataError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    print(f"exported {report.episodes} episodes ({report.frames} frames, fps {report.fps}, views {report.views}) "
          f"to {args.out}; skipped {len(report.skipped)}")  # fmt: skip
    for path, reason in report.skipped.items():
        print(f"  skipped {path}: {reason}", file=sys.stderr)
    return 0 if report.episodes else 1
