"""bag -> DROID layout -> the AC training loader: frames (within video compression), states and actions survive."""

from __future__ import annotations

import json

import h5py
import numpy as np
import torch

from vjepa2_core.data.droid import CARTESIAN_KEY, GRIPPER_KEY, DROIDDataset, open_episode, read_index
from vjepa2_core.data.video import read_frames
from vjepa2_core.planning.poses import pose_diff
from vjepa2_ros.bags.bag2droid import main
from vjepa2_ros.bags.synthetic import synthetic_trajectory
from vjepa2_ros.bags.writer import write_trajectory_bag


def _stored(path):
    """Every video frame and state of one written episode, read back with h5py and the project's video reader."""
    ep = open_episode(path, "left_mp4_path")
    with h5py.File(path / "trajectory.h5", "r") as h5:
        states = np.concatenate([h5[CARTESIAN_KEY][:], h5[GRIPPER_KEY][:][:, None]], axis=1)
    return ep, read_frames(ep.video, np.arange(ep.num_frames)), states


def _episodes(out):
    paths = read_index(out / "trajectories.csv")
    metas = [json.loads(next(p.glob("*.json")).read_text()) for p in paths]
    return paths, metas


def test_roundtrip_through_training_loader(tmp_path, capsys):
    frames, states, actions = synthetic_trajectory(40, seed=5, size=64, gripper_at=30)
    bag = write_trajectory_bag(
        tmp_path / "bag", frames, states, storage="sqlite3", actions=actions, rate=15.0, drop={"image": [20]}
    )
    out = tmp_path / "droid"
    assert main([str(bag), "--out", str(out), "--rate", "15", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_episodes"] == 2 and report["frames"] == 40 and report["skipped_steps"] == {"no_image": 1}
    paths, metas = _episodes(out)
    assert [m["first_step"] for m in metas] == [0, 21] and [m["trajectory_length"] for m in metas] == [20, 20]

    for path, meta in zip(paths, metas):
        ep, stored_frames, stored_states = _stored(path)
        assert ep.num_frames == 20 and abs(ep.video_fps - 15.0) < 1e-6
        steps = meta["first_step"] + np.arange(20)
        np.testing.assert_allclose(stored_states, states[steps], atol=1e-6)
        diff = np.abs(stored_frames.astype(int) - frames[steps]).mean()
        assert diff < 4.0, f"video round trip changed frames by {diff:.2f} grey levels"

    ds = DROIDDataset(out / "trajectories.csv", frames_per_clip=4, fps=4.0, crop_size=64)
    for i in range(len(ds)):
        sample = ds[i]
        steps = metas[i]["first_step"] + sample["indices"].numpy()
        assert sample["frames"].shape == (3, 4, 64, 64) and int(sample["skipped"]) == 0
        np.testing.assert_allclose(sample["states"].numpy(), states[steps], atol=1e-6)
        # actions the loader derives from consecutive states: the recorded per-step actions composed over the step
        expected = pose_diff(torch.as_tensor(states[steps[:-1]]), torch.as_tensor(states[steps[1:]])).numpy()
        np.testing.assert_allclose(sample["actions"].numpy(), expected, atol=1e-5)
        np.testing.assert_allclose(
            sample["actions"][:, :3].numpy(),
            [actions[a:b, :3].sum(0) for a, b in zip(steps[:-1], steps[1:])],
            atol=1e-6,
        )


def test_franka_real_frames(tmp_path, franka_npz):
    data = np.load(franka_npz)
    frames, states = data["observations"][0], data["states"][0].astype(np.float64)
    idx = [0] * 10 + [1] * 10
    bag = write_trajectory_bag(tmp_path / "bag", frames[idx], states[idx], storage="mcap", image_format="jpeg")
    out = tmp_path / "droid"
    extrinsics = ["0.1", "-0.5", "0.6", "0", "0.3", "1.5"]
    assert main([str(bag), "--out", str(out), "--rate", "4", "--camera-extrinsics", *extrinsics]) == 0
    (path,), _ = _episodes(out)
    ep, stored_frames, stored_states = _stored(path)
    np.testing.assert_allclose(stored_states, states[idx], atol=1e-6)
    with h5py.File(path / "trajectory.h5", "r") as h5:
        np.testing.assert_allclose(
            h5[f"observation/camera_extrinsics/{ep.serial}_left"][:], [[float(v) for v in extrinsics]] * 20
        )
    for i, frame in enumerate(stored_frames):
        assert np.abs(frame.astype(int) - frames[idx[i]]).mean() < 6.0  # jpeg in the bag, then MP4


def test_bad_bags_and_short_runs(tmp_path, capsys):
    frames, states, _ = synthetic_trajectory(12, seed=1, size=32)
    good = write_trajectory_bag(tmp_path / "good", frames, states, drop={"pose": [3]})
    (tmp_path / "broken").mkdir()
    rc = main([str(good), str(tmp_path / "broken"), "--out", str(tmp_path / "droid"), "--rate", "4", "--json"])
    captured = capsys.readouterr()
    assert rc == 1 and "not a rosbag2 directory" in captured.err
    report = json.loads(captured.out)
    # steps 0-2 are too short for an episode (min 8), steps 4-12 make one
    assert report["num_episodes"] == 1 and report["frames"] == 9 and report["short_runs_dropped"] == 1
    assert report["skipped_steps"] == {"no_pose": 1} and list(report["failed_bags"]) == [str(tmp_path / "broken")]
