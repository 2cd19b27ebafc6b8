"""`vjepa2-sim-collect`: exploratory simulator episodes written in the DROID layout for AC post-training.

The behaviour policy strings together short segments of three kinds, so the data covers the workspace and
the whole action range (including "stay still", which the planner needs for holding at the goal):
  waypoint: head for a random workspace point at a random speed (long, straight moves),
  jitter:   i.i.d. uniform deltas at a random scale (small and large, all directions),
  hold:     zero actions.
Each task's mix of segment kinds is its `exploration` (vjepa2_ros.sim.tasks). Push adds a fourth kind, so that
the block actually moves (random arm motion alone rarely touches it):
  push:     the scripted pusher toward a random target (from a random side, not only toward the goal), with
            Gaussian noise on every action.
Pick-and-place adds a fifth instead, so that the block is actually grasped, lifted and carried:
  pick:     the scripted picker carrying the block to a random target on or above the table (sometimes its
            goal), with Gaussian noise on every move and random gripper toggles.
`videos.csv` lists the same MP4s for self-supervised pretraining of the encoder on simulator video.
Videos are written at `fps = 4` so the DROID loader (fps 4) samples consecutive frames: one frame per action.
They are re-encoded losslessly (FFV1 in the .mp4 container, which OpenCV/ffmpeg read): at 64 px the default mp4v
codec errs by ~4 grey levels per pixel, more than an arm step changes the image (~3).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from vjepa2_ros.sim.env import FetchSim, SimConfig, SimError, scripted_pick_action, scripted_push_action
from vjepa2_ros.sim.tasks import SEGMENT_KINDS, task_names

VIDEO_FPS = 4.0
VIDEO_LIST = "videos.csv"
PUSH_NOISE = 0.15  # push segments: action noise, as a fraction of the largest step
PUSH_TARGET_RANGE = (0.05, 0.15)  # push segments: how far the block is to be pushed (m)
PICK_NOISE = 0.08  # pick segments: action noise (push's 0.15 kept the picker from centring on the block)
PICK_TOGGLE_P = 0.04  # pick segments: chance per step of a random gripper command (+1 close / -1 open)


def exploration_actions(sim: FetchSim, rng: np.random.Generator):
    """Endless generator of 7-D actions from the segment mixture (reads the arm position as it goes)."""
    max_step = sim.cfg.max_step
    probs = sim.task.segment_probs()  # the task's exploration mix
    while True:
        kind = SEGMENT_KINDS[rng.choice(len(SEGMENT_KINDS), p=probs)]
        length = int(rng.integers(2, 9))
        if kind == "push":
            yield from push_segment(sim, rng)
            continue
        if kind == "pick":
            yield from pick_segment(sim, rng)
            continue
        if kind == "waypoint":
            goal = rng.uniform(sim.low, sim.high)
            speed = rng.uniform(0.2, 1.0) * max_step
        scale = rng.uniform(0.1, 1.0) * max_step
        for _ in range(length):
            action = np.zeros(7)
            if kind == "waypoint":
                delta = goal - sim.ee_position()
                dist = np.linalg.norm(delta)
                action[:3] = delta * min(1.0, speed / max(dist, 1e-9)) + rng.normal(0.0, 0.1 * speed, 3)
            elif kind == "jitter":
                action[:3] = rng.uniform(-scale, scale, 3)
            yield np.clip(action, -max_step, max_step)


def push_segment(sim: FetchSim, rng: np.random.Generator, max_len: int = 16):
    """Noisy scripted pushes of the block toward a random target (a random side; sometimes its goal)."""
    angle = rng.uniform(0.0, 2 * np.pi)
    target = sim.block_position()[:2] + rng.uniform(*PUSH_TARGET_RANGE) * np.array([np.cos(angle), np.sin(angle)])
    if rng.random() < 0.3 or not sim.on_table_xy(target):  # the goal, or when the target is off the goal range
        target = sim.goal[:2]
    for _ in range(int(rng.integers(6, max_len + 1))):
        action = scripted_push_action(sim, target)
        action[:3] += rng.normal(0.0, PUSH_NOISE * sim.cfg.max_step, 3)
        yield np.clip(action, -sim.cfg.max_step, sim.cfg.max_step)


def pick_segment(sim: FetchSim, rng: np.random.Generator, max_len: int = 30):
    """Noisy scripted pick-and-place of the block to a random target on or above the table (sometimes its goal),
    with random gripper toggles (drops, missed and repeated grasps)."""
    angle = rng.uniform(0.0, 2 * np.pi)
    xy = sim.block_position()[:2] + rng.uniform(*PUSH_TARGET_RANGE) * np.array([np.cos(angle), np.sin(angle)])
    target = np.r_[xy, sim.table_top + sim.block_half + rng.uniform(*sim.cfg.pick_goal_height)]
    if rng.random() < 0.3 or not sim.on_table_xy(xy):
        target = sim.goal
    for _ in range(int(rng.integers(12, max_len + 1))):
        action = scripted_pick_action(sim, target)
        action[:3] += rng.normal(0.0, PICK_NOISE * sim.cfg.max_step, 3)
        if rng.random() < PICK_TOGGLE_P:
            action[6] = rng.choice([-1.0, 1.0])
        action[:3] = np.clip(action[:3], -sim.cfg.max_step, sim.cfg.max_step)  # the gripper keeps its +-1
        yield action


def collect_episode(sim: FetchSim, steps: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One episode from a random start: frames [T+1,H,W,3], cartesian [T+1,6], gripper [T+1], actions [T,7]."""
    sim.reset(seed=int(rng.integers(2**31)))
    policy = exploration_actions(sim, rng)
    has_block = sim.block_half is not None
    frames, states, actions = [sim.render()], [sim.state()], []
    blocks = [sim.block_position()] if has_block else []
    for _ in range(steps):
        actions.append(next(policy))
        states.append(sim.step(actions[-1]))
        frames.append(sim.render())
        if has_block:
            blocks.append(sim.block_position())
    states_arr = np.stack(states).astype(np.float64)
    episode = {
        "frames": np.stack(frames),
        "cartesian": states_arr[:, :6],
        "gripper": states_arr[:, 6],
        "actions": np.stack(actions),
    }
    if has_block:
        episode["block"] = np.stack(blocks)  # [T+1, 3] block centre per frame (for probes of frozen features)
        episode["goal"] = sim.goal.copy()
    return episode


def rewrite_lossless(ep_dir: Path, frames: np.ndarray, fps: float = VIDEO_FPS) -> None:
    """Replace the episode's MP4(s) with a lossless FFV1 encoding of the same frames (same path and count)."""
    from vjepa2_core.data.video import VideoError, write_mp4

    for path in (ep_dir / "recordings" / "MP4").glob("*.mp4"):
        try:
            write_mp4(path, frames, fps, fourcc="FFV1")
        except VideoError as exc:
            raise SimError(f"this OpenCV cannot write FFV1 video ({exc}); rerun with --lossy") from None


def write_droid_episode(out: Path, ep: dict, meta: dict, lossless: bool) -> Path:
    """One episode in the DROID layout, its videos also listed in `videos.csv` for V-JEPA pretraining."""
    from vjepa2_core.data.droid import write_episode

    ep_dir = write_episode(out, ep["frames"], ep["cartesian"], ep["gripper"], fps=VIDEO_FPS, metadata=meta)
    if lossless:
        rewrite_lossless(ep_dir, ep["frames"])
    with open(out / VIDEO_LIST, "a") as f:
        f.writelines(f"{p.resolve()} 0\n" for p in sorted((ep_dir / "recordings" / "MP4").glob("*.mp4")))
    return ep_dir


def collect(
    out: str | Path,
    episodes: int,
    steps: int = 40,
    seed: int = 0,
    config: SimConfig | None = None,
    lossless: bool = True,
    append: bool = False,
    log=print,
    fmt: str = "droid",
) -> dict:
    """Write `episodes` DROID episodes under `out` (index `trajectories.csv`); returns the collection summary.

    `fmt="lerobot"`: a LeRobotDataset v3.0 at `out` instead (AV1 video, no `--append`)."""
    from vjepa2_core.data.droid import DEFAULT_VIEW, INDEX_CSV

    if episodes < 1 or steps < 1:
        raise ValueError(f"episodes and steps must be >= 1, got {episodes} and {steps}")
    out = Path(out)
    if not append and (out / INDEX_CSV).exists():
        raise ValueError(f"{out} already holds a collection ({INDEX_CSV}); pass --append to add to it")
    lerobot = None
    if fmt == "lerobot":
        from vjepa2_core.data.lerobot.mapping import view_name
        from vjepa2_core.data.lerobot.writer import LeRobotWriter

        if append:
            raise ValueError("--append is not supported with --format lerobot")
        lerobot = LeRobotWriter(out, VIDEO_FPS, robot_type="sim")
    cfg = config or SimConfig()
    sim = FetchSim(cfg, seed=seed)
    rng = np.random.default_rng(seed)
    positions, moves, block_moves, t0 = [], [], [], time.perf_counter()
    try:
        for i in range(episodes):
            ep = collect_episode(sim, steps, rng)
            meta = {"sim_task": cfg.task, "codec": "FFV1" if lossless else "mp4v"}
            if "block" in ep:
                meta["block_position"] = ep["block"].round(5).tolist()
                meta["block_goal"] = ep["goal"].round(5).tolist()
                block_moves.append(float(np.linalg.norm(ep["block"][-1, :2] - ep["block"][0, :2])))
            if lerobot is not None:
                views = {view_name(DEFAULT_VIEW): ep["frames"]}
                lerobot.add_episode(views, ep["cartesian"], ep["gripper"], cfg.task)
            else:
                write_droid_episode(out, ep, meta, lossless)
            positions.append(ep["cartesian"][:, :3])
            moves.append(np.linalg.norm(np.diff(ep["cartesian"][:, :3], axis=0), axis=1))
            if (i + 1) % max(1, episodes // 10) == 0 or i + 1 == episodes:
                log(f"[collect] {i + 1}/{episodes} episodes, {time.perf_counter() - t0:.1f} s")
    finally:
        sim.close()
        if lerobot is not None:
            lerobot.close()
    pos, mv = np.concatenate(positions), np.concatenate(moves)
    summary = {
        "episodes": episodes,
        "steps_per_episode": steps,
        "seed": seed,
        "video_fps": VIDEO_FPS,
        "lossless": lossless and lerobot is None,  # LeRobot video is AV1 (lossy)
        "sim_config": asdict(cfg),
        "format": fmt,
        "index": str(out / ("meta/info.json" if lerobot is not None else INDEX_CSV)),
        "video_list": None if lerobot is not None else str(out / VIDEO_LIST),
        "workspace_coverage_m": {"min": pos.min(0).round(3).tolist(), "max": pos.max(0).round(3).tolist()},
        "step_length_m": {"mean": round(float(mv.mean()), 4), "p10": round(float(np.percentile(mv, 10)), 4),
                          "p90": round(float(np.percentile(mv, 90)), 4)},
        "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    if block_moves:
        bm = np.array(block_moves)
        summary["block_moved_2cm_fraction"] = round(float((bm > 0.02).mean()), 3)
        summary["block_displacement_m"] = {"mean": round(float(bm.mean()), 4), "max": round(float(bm.max()), 4)}
    (out / "collection.json").write_text(json.dumps(summary, indent=1))
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vjepa2-sim-collect", description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, required=True, help="number of episodes to write")
    p.add_argument("--out", required=True, help="output directory (DROID layout, index trajectories.csv)")
    p.add_argument("--steps", type=int, default=40, help="actions per episode (frames = steps + 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", default=SimConfig.task, choices=task_names())
    p.add_argument("--image-size", type=int, default=SimConfig.image_size, help="square camera image size (px)")
    p.add_argument("--lossy", action="store_true", help="keep the default mp4v videos instead of lossless FFV1")
    p.add_argument("--append", action="store_true", help="add episodes to an existing collection in --out")
    p.add_argument("--format", choices=("droid", "lerobot"), default="droid", help="lerobot: a LeRobotDataset v3.0")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        summary = collect(
            args.out,
            args.episodes,
            args.steps,
            args.seed,
            SimConfig(task=args.task, image_size=args.image_size),
            lossless=not args.lossy,
            append=args.append,
            fmt=args.format,
        )
    except (SimError, ValueError, FileExistsError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
