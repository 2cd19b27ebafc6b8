"""DROID layout on real files: the writer, the clip loader (frames, states, actions, extrinsics) and bad episodes."""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from vjepa2_core.data.droid import (
    CARTESIAN_KEY,
    DROIDDataError,
    DROIDDataset,
    collate,
    read_index,
    split_episodes,
    write_episode,
)
from vjepa2_core.data.transforms import central_crop_box, random_resized_crop_box
from vjepa2_core.data.video import read_frames

H, W = 72, 128


def bar_frames(n: int) -> np.ndarray:
    """Frame t shows a white bar starting at column 2t, so a decoded frame reveals its own index."""
    frames = np.zeros((n, H, W, 3), np.uint8)
    for t in range(n):
        frames[t, :, 2 * t : 2 * t + 6] = 255
    return frames


def random_states(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    cart = np.cumsum(rng.normal(0, 0.03, (n, 6)), axis=0)
    cart[:, 3:] += rng.uniform(-1, 1, 3)
    return cart, rng.uniform(0, 1, n)


@pytest.fixture(scope="module")
def episodes(tmp_path_factory) -> tuple[Path, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    root = tmp_path_factory.mktemp("droid")
    rng = np.random.default_rng(0)
    truth = []
    for _ in range(3):
        cart, grip = random_states(40, rng)
        extr = np.tile(np.r_[rng.normal(0, 0.5, 3), rng.uniform(-1, 1, 3)], (40, 1))
        write_episode(root, bar_frames(40), cart, grip, extrinsics=extr, fps=15)
        truth.append((cart, grip, extr))
    return root, truth


def bar_column(frame: np.ndarray) -> int:
    return int(np.argmax(frame[H // 2, :, 0] > 128))


def test_writer_layout_and_seek(episodes):
    root, truth = episodes
    dirs = read_index(root / "trajectories.csv")
    assert len(dirs) == 3 and all(d.is_dir() for d in dirs)
    ep = dirs[1]
    assert len(list(ep.glob("metadata_*.json"))) == 1
    with h5py.File(ep / "trajectory.h5") as h5:
        np.testing.assert_allclose(h5[CARTESIAN_KEY][:], truth[1][0])
    mp4 = next((ep / "recordings" / "MP4").glob("*.mp4"))
    frames = read_frames(mp4, [5, 17, 39])
    assert frames.shape == (3, H, W, 3)
    assert [bar_column(f) for f in frames] == [10, 34, 78]


def test_clip_states_actions_and_frames(episodes):
    root, truth = episodes
    ds = DROIDDataset(root / "trajectories.csv", frames_per_clip=4, fps=5, crop_size=64)
    s = ds[2]
    assert s["frames"].shape == (3, 4, 64, 64) and s["states"].shape == (4, 7)
    assert s["actions"].shape == (3, 7) and s["extrinsics"].shape == (4, 6)
    idx = s["indices"].numpy()
    assert (np.diff(idx) == 3).all() and idx[-1] + 3 <= 39  # step ceil(15/5) = 3, end <= N-1
    cart, grip, extr = truth[int(s["episode"])]
    np.testing.assert_allclose(s["states"].numpy(), np.c_[cart[idx], grip[idx]], atol=1e-6)
    np.testing.assert_allclose(s["extrinsics"].numpy(), extr[idx], atol=1e-6)
    # actions: the reference convention, computed independently with scipy
    rot = Rotation.from_euler("xyz", cart[idx, 3:])
    d_euler = (rot[1:] * rot[:-1].inv()).as_euler("xyz")
    expected = np.c_[np.diff(cart[idx, :3], axis=0), d_euler, np.diff(grip[idx])]
    np.testing.assert_allclose(s["actions"].numpy(), expected, atol=1e-5)
    # the crop is deterministic with scale 1.777: full height, width 1.35 H, centred, resized to 64
    top, left, h, w = central_crop_box(H, W, (0.75, 1.35))
    assert (top, h, w) == (0, 72, 97)
    # the bar of the first clip frame sits where the crop+resize maps column 2*idx[0]
    col = int(torch.argmax((s["frames"][0, 0, 32] > 0).int()))
    assert abs(col - (2 * idx[0] - left) * 64 / w) <= 2


def test_frame_steps_mix_multi_step_moves_into_one_action(episodes):
    root, truth = episodes
    ds = DROIDDataset(root / "trajectories.csv", frames_per_clip=2, crop_size=32, frame_steps=[1, 4])
    seen = set()
    for i in range(30):
        s = ds[i % 3]
        idx = s["indices"].numpy()
        seen.add(int(idx[1] - idx[0]))
        cart = truth[int(s["episode"])][0]
        np.testing.assert_allclose(s["actions"][0, :3].numpy(), cart[idx[1], :3] - cart[idx[0], :3], atol=1e-5)
    assert seen == {1, 4}
    for bad in ([], [0], [1.5]):
        with pytest.raises(ValueError, match="frame_steps"):
            DROIDDataset(root / "trajectories.csv", frames_per_clip=2, crop_size=32, frame_steps=bad)


def test_sampling_is_a_function_of_seed_epoch_index(episodes):
    root, _ = episodes
    ds = DROIDDataset(root / "trajectories.csv", frames_per_clip=4, fps=5, crop_size=32, seed=3)
    a = ds[0]["indices"]
    assert torch.equal(a, ds[0]["indices"])
    seen = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        seen.add(tuple(ds[0]["indices"].tolist()))
    assert len(seen) > 1


def test_camera_frame_poses(episodes):
    root, truth = episodes
    ds = DROIDDataset(root / "trajectories.csv", frames_per_clip=3, fps=5, crop_size=32, camera_frame=True)
    s = ds[0]
    cart, grip, extr = truth[0]
    idx = s["indices"].numpy()

    def matrix(p):
        m = np.eye(4)
        m[:3, :3] = Rotation.from_euler("xyz", p[3:6]).as_matrix()
        m[:3, 3] = p[:3]
        return m

    for k, i in enumerate(idx):
        rel = np.linalg.inv(matrix(extr[i])) @ matrix(cart[i])
        np.testing.assert_allclose(s["states"][k, :3].numpy(), rel[:3, 3], atol=1e-5)
        np.testing.assert_allclose(
            Rotation.from_euler("xyz", s["states"][k, 3:6].double().numpy()).as_matrix(), rel[:3, :3], atol=1e-5
        )
        assert s["states"][k, 6].item() == pytest.approx(grip[i], abs=1e-6)


def test_corrupt_and_short_episodes_are_skipped(tmp_path, caplog):
    rng = np.random.default_rng(1)
    good = [write_episode(tmp_path, bar_frames(30), *random_states(30, rng)) for _ in range(2)]
    short = write_episode(tmp_path, bar_frames(6), *random_states(6, rng))
    broken_video = write_episode(tmp_path, bar_frames(30), *random_states(30, rng))
    next((broken_video / "recordings" / "MP4").glob("*.mp4")).write_bytes(b"not a video")
    broken_h5 = write_episode(tmp_path, bar_frames(30), *random_states(30, rng))
    with h5py.File(broken_h5 / "trajectory.h5", "a") as h5:
        del h5[CARTESIAN_KEY]
    missing = tmp_path / "does_not_exist"
    with open(tmp_path / "trajectories.csv", "a") as f:
        f.write(f"{missing}\n")
    with caplog.at_level(logging.WARNING, logger="vjepa2_core.data.droid"):
        ds = DROIDDataset(tmp_path / "trajectories.csv", frames_per_clip=4, fps=5, crop_size=32)
        batch = collate([ds[i] for i in range(len(ds))])
    assert len(ds) == 6 and batch["frames"].shape == (6, 3, 4, 32, 32)
    used = {ds.paths[i] for i in batch["episode"].tolist()}
    assert used <= set(good) and short not in used
    assert ds.num_skipped == 4 and int(batch["skipped"].sum()) >= 4
    assert "skipping episode" in caplog.text and "too short" in caplog.text


def test_no_usable_episode_is_a_clear_error(tmp_path):
    rng = np.random.default_rng(2)
    write_episode(tmp_path, bar_frames(5), *random_states(5, rng))
    with pytest.raises(DROIDDataError, match="no usable episode.*too short"):
        DROIDDataset(tmp_path / "trajectories.csv", frames_per_clip=4, fps=5)
    with pytest.raises(DROIDDataError, match="does not exist"):
        DROIDDataset(tmp_path / "nope.csv")


def test_retries_are_bounded(tmp_path):
    rng = np.random.default_rng(3)
    write_episode(tmp_path, bar_frames(30), *random_states(30, rng))
    for _ in range(3):
        write_episode(tmp_path, bar_frames(4), *random_states(4, rng))
    ds = DROIDDataset(tmp_path / "trajectories.csv", frames_per_clip=4, fps=5, crop_size=32, max_retries=0)
    with pytest.raises(DROIDDataError, match="consecutive unusable episodes"):
        ds[1]


def test_writer_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="cartesian must be"):
        write_episode(tmp_path, bar_frames(4), np.zeros((4, 7)), np.zeros(4))
    with pytest.raises(ValueError, match="frames but the states"):
        write_episode(tmp_path, bar_frames(3), np.zeros((4, 6)), np.zeros(4))


def test_random_resized_crop_sampler():
    rng = np.random.default_rng(0)
    assert random_resized_crop_box(180, 320, (1.777, 1.777), (0.75, 1.35), rng) == central_crop_box(
        180, 320, (0.75, 1.35)
    )
    boxes = {random_resized_crop_box(180, 320, (0.3, 1.0), (0.75, 1.35), rng) for _ in range(20)}
    assert len(boxes) > 10
    for top, left, h, w in boxes:
        assert 0 <= top <= 180 - h and 0 <= left <= 320 - w and 0.74 <= w / h <= 1.36


def test_split_episodes_is_deterministic():
    paths = [Path(f"/e{i}") for i in range(20)]
    train, held = split_episodes(paths, 0.1, seed=5)
    assert len(held) == 2 and set(train).isdisjoint(held) and len(train) == 18
    assert split_episodes(paths, 0.1, seed=5) == (train, held)
    assert split_episodes(paths[:1], 0.5, seed=5) == (paths[:1], [])
