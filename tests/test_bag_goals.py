"""`vjepa2-bag-goals` on real MCAP and sqlite3 bags: the PNGs are the recorded frames, picked at the asked times."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vjepa2_core.data.images import decode_compressed, encode_compressed, read_image_file
from vjepa2_ros.bags.synthetic import synthetic_trajectory
from vjepa2_ros.bags.writer import Topics, write_trajectory_bag

TOOL = str(Path(sys.executable).parent / "vjepa2-bag-goals")
RATE = 4.0  # frames at 0, 0.25, ..., 2.75 s from the bag's start


@pytest.fixture(scope="module")
def traj():
    frames, states, _ = synthetic_trajectory(11, seed=5, size=40)  # 12 frames
    return frames, states


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TOOL, *map(str, args)], capture_output=True, text=True, timeout=300)


def recorded(frame: np.ndarray, fmt: str) -> np.ndarray:
    """The frame as a reader of the bag gets it back (jpeg is lossy: its decoded bytes)."""
    return decode_compressed("jpeg", encode_compressed(frame, "jpeg")) if fmt == "jpeg" else frame


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("fmt", ["rgb8", "jpeg"])
def test_frames_at_times_are_the_recorded_ones(tmp_path, traj, storage, fmt):
    frames, states = traj
    bag = write_trajectory_bag(tmp_path / "demo", frames, states, storage=storage, rate=RATE, image_format=fmt)
    out = tmp_path / "goals"
    proc = run_tool(bag, "--topic", Topics.image, "--at", "0.6,1.0,2.75", "--out", out)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["01_subgoal.png", "02_subgoal.png", "03_goal.png"]
    for name, index in zip(names, [2, 4, 11]):  # 0.6 s is nearest to the frame at 0.5 s
        np.testing.assert_array_equal(read_image_file(out / name), recorded(frames[index], fmt))
    assert f"--goal {out / '03_goal.png'} --subgoals {out / '01_subgoal.png'} {out / '02_subgoal.png'}" in proc.stdout


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_evenly_spaced_frames_end_with_the_last_one(tmp_path, traj, storage):
    frames, states = traj
    bag = write_trajectory_bag(tmp_path / "demo", frames, states, storage=storage, rate=RATE, image_format="png")
    out = tmp_path / "goals"
    proc = run_tool(bag, "--topic", Topics.image, "--evenly", "3", "--out", out)
    assert proc.returncode == 0, proc.stderr
    got = [read_image_file(p) for p in sorted(out.iterdir())]
    assert len(got) == 3
    for image, index in zip(got, [4, 7, 11]):  # 11/3 and 22/3 frames in, then the last frame
        np.testing.assert_array_equal(image, frames[index])
    # the same PNGs are not overwritten by a second run
    again = run_tool(bag, "--topic", Topics.image, "--evenly", "3", "--out", out)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr


def test_missing_topic_time_outside_and_too_many_frames_are_clear_errors(tmp_path, traj):
    frames, states = traj
    bag = write_trajectory_bag(tmp_path / "demo", frames, states, storage="mcap", rate=RATE)
    out = tmp_path / "goals"
    proc = run_tool(bag, "--topic", "/nope", "--evenly", "2", "--out", out)
    assert proc.returncode == 2
    assert "topic '/nope' not in bag" in proc.stderr and Topics.image in proc.stderr  # lists what is there
    proc = run_tool(bag, "--topic", Topics.image, "--at", "1.0,9.5", "--out", out)
    assert proc.returncode == 2 and "[9.5] outside the bag, which lasts 2.751 s" in proc.stderr, proc.stderr
    proc = run_tool(bag, "--topic", Topics.image, "--evenly", "12", "--out", out)
    assert proc.returncode == 2 and "only 12 frames" in proc.stderr
    proc = run_tool(bag, "--topic", Topics.pose, "--evenly", "2", "--out", out)
    assert proc.returncode == 2 and "expected one of: sensor_msgs/msg/Image" in proc.stderr
    proc = run_tool(tmp_path / "no_bag", "--evenly", "2", "--out", out)
    assert proc.returncode == 2 and "bag not found" in proc.stderr
    assert not out.exists(), "nothing is written on an error"
