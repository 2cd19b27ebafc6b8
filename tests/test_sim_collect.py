"""`vjepa2-sim-collect` writes DROID episodes that the AC training loader reads back, losslessly and consistently."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import torch

from vjepa2_core.data.droid import DROIDDataset, read_index
from vjepa2_core.data.video import read_frames
from vjepa2_core.data.video_dataset import read_list
from vjepa2_ros.sim.collect import collect, collect_episode
from vjepa2_ros.sim.env import FetchSim, SimConfig


def test_collect_writes_episodes_the_training_loader_reads(tmp_path):
    summary = collect(tmp_path, episodes=3, steps=12, seed=1, config=SimConfig(image_size=32), log=lambda _: None)
    dirs = read_index(tmp_path / "trajectories.csv")
    assert len(dirs) == 3 and summary["episodes"] == 3
    assert json.loads((tmp_path / "collection.json").read_text())["steps_per_episode"] == 12
    videos = read_list(tmp_path / "videos.csv")
    assert len(videos) == 3 and all(Path(v).is_file() and label == 0 for v, label in videos)

    ds = DROIDDataset(tmp_path / "trajectories.csv", frames_per_clip=4, fps=4, crop_size=32)
    sample = ds[0]
    assert tuple(sample["frames"].shape) == (3, 4, 32, 32)
    assert tuple(sample["states"].shape) == (4, 7) and tuple(sample["actions"].shape) == (3, 7)
    assert int(sample["skipped"]) == 0
    # consecutive frames (fps 4 over 4 fps video): actions are the state differences of neighbouring steps
    idx = sample["indices"].numpy()
    assert np.all(np.diff(idx) == 1)
    with h5py.File(dirs[int(sample["episode"])] / "trajectory.h5", "r") as h5:
        cart = h5["observation/robot_state/cartesian_position"][:]
    assert cart.shape == (13, 6)
    torch.testing.assert_close(sample["actions"][:, :3], torch.as_tensor(np.diff(cart[idx, :3], axis=0)).float())
    assert sample["actions"][:, :3].abs().max() <= 0.05 + 1e-3


def test_videos_are_lossless_and_actions_vary(tmp_path):
    sim = FetchSim(SimConfig(image_size=32), seed=0)
    try:
        ep = collect_episode(sim, 30, np.random.default_rng(0))
    finally:
        sim.close()
    moves = np.linalg.norm(ep["actions"][:, :3], axis=1)
    assert moves.max() > 0.03 and np.percentile(moves, 20) < 0.02, "actions should span small and large moves"
    assert np.ptp(ep["cartesian"][:, :3], axis=0).max() > 0.05, "the arm should travel across the workspace"
    summary = collect(tmp_path, episodes=1, steps=8, seed=3, config=SimConfig(image_size=32), log=lambda _: None)
    ep_dir = read_index(summary["index"])[0]
    video = next((ep_dir / "recordings" / "MP4").glob("*.mp4"))
    sim = FetchSim(SimConfig(image_size=32), seed=3)
    try:
        again = collect_episode(sim, 8, np.random.default_rng(3))  # same seed: same episode
    finally:
        sim.close()
    np.testing.assert_array_equal(read_frames(video, list(range(9))), again["frames"])


def test_cli_rejects_bad_arguments(tmp_path):
    cmd = [sys.executable, "-m", "vjepa2_ros.sim.collect", "--out", str(tmp_path), "--episodes"]
    res = subprocess.run(cmd + ["0"], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "episodes and steps must be >= 1" in res.stderr
    (tmp_path / "trajectories.csv").write_text("")
    res = subprocess.run(cmd + ["1"], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "--append" in res.stderr and "Traceback" not in res.stderr


def test_push_collection_moves_the_block_and_the_loader_reads_it(tmp_path):
    summary = collect(tmp_path, episodes=3, steps=24, seed=2, config=SimConfig(task="push"), log=lambda _: None)
    assert summary["block_moved_2cm_fraction"] >= 2 / 3, summary  # push segments touch the block
    ds = DROIDDataset(tmp_path / "trajectories.csv", frames_per_clip=4, fps=4, crop_size=64)
    sample = ds[0]
    assert tuple(sample["frames"].shape) == (3, 4, 64, 64) and tuple(sample["actions"].shape) == (3, 7)
    ep_dir = read_index(tmp_path / "trajectories.csv")[0]
    meta = json.loads(next(ep_dir.glob("metadata_*.json")).read_text())
    blocks = np.array(meta["block_position"])
    assert meta["sim_task"] == "push" and blocks.shape == (25, 3) and len(meta["block_goal"]) == 3
    with h5py.File(ep_dir / "trajectory.h5", "r") as h5:
        assert h5["observation/robot_state/cartesian_position"].shape == (25, 6)
