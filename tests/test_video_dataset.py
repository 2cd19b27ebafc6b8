"""Video dataset on real MP4 files: frame selection, fps steps, skipping bad/short videos, images, collation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vjepa2_core.data.synthetic_videos import moving_shape_frames, write_moving_shapes_dataset, write_video
from vjepa2_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from vjepa2_core.data.video import read_frames
from vjepa2_core.data.video_dataset import VideoDataset, VideoTrainTransform, frame_step_for, read_list
from vjepa2_core.data.weighted_sampler import WeightedResumableSampler
from vjepa2_core.masks import VJEPA2_MASK_CFGS, MultiSeqMaskCollator


def raw(frames: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Identity-like transform that keeps decoded pixels (float [3,T,H,W]) for checking frame content."""
    return torch.as_tensor(frames).permute(3, 0, 1, 2).float()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    frames, _ = moving_shape_frames(40, size=48, seed=3)
    path = write_video(tmp_path_factory.mktemp("v") / "clip.mp4", frames, fps=12.0)
    return str(path), frames


def test_read_frames_returns_exactly_the_requested_frames(video):
    path, frames = video
    idx = [2, 5, 17, 39]
    got = read_frames(path, idx)
    assert got.shape == (4, 48, 48, 3) and got.dtype == np.uint8
    for g, i in zip(got, idx):
        err = np.abs(g.astype(int) - frames[i]).mean()
        neighbour = np.abs(g.astype(int) - frames[i - 1]).mean()
        assert err < 6 and err < neighbour  # lossy mp4v, but closest to the requested frame


def test_fps_based_frame_step():
    assert frame_step_for(30.0, 4, 99) == 7  # ceil(30) // 4
    assert frame_step_for(29.97, 4, 99) == 7
    assert frame_step_for(12.0, 4, 99) == 3
    assert frame_step_for(2.0, 4, 99) == 1
    assert frame_step_for(30.0, None, 5) == 5


def test_dataset_sample_layout_and_frame_indices(video, tmp_path):
    path, frames = video
    ds = VideoDataset([path], dataset_fpcs=[8], transform=raw, fps=4)  # 12 fps video -> step 3
    clips, label, indices = ds[0]
    assert len(clips) == len(indices) == 1 and label == 0
    idx = indices[0]
    assert clips[0].shape == (3, 8, 48, 48)
    assert np.all(np.diff(idx) == 3) and idx[0] >= 0 and idx[-1] < 40
    decoded = clips[0].permute(1, 2, 3, 0).numpy()
    assert np.abs(decoded - frames[idx]).mean() < 6


def test_bad_and_short_videos_are_skipped_and_counted(video, tmp_path):
    path, _ = video
    short = write_video(tmp_path / "short.mp4", moving_shape_frames(5, 48)[0])
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 20)
    csv = tmp_path / "list.csv"
    csv.write_text(f"{short} 1\n{broken} 2\n{path} 7\n")
    ds = VideoDataset([csv], dataset_fpcs=[8], transform=raw, frame_step=2)
    labels = [ds[i][1] for i in range(3)]
    assert labels == [7, 7, 7]  # only the good video can serve a clip
    assert ds.skipped["too_short"] >= 1 and ds.skipped["unreadable"] >= 1
    only_bad = tmp_path / "bad.csv"
    only_bad.write_text(f"{broken}\n")
    with pytest.raises(RuntimeError, match="could not be read"):
        VideoDataset([only_bad], [8], raw, max_retries=3)[0]


def test_list_parsing_and_clear_errors(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    csv = tmp_path / "l.csv"
    csv.write_text("# comment\na.mp4,3\n\n")
    assert read_list(csv) == [(str(tmp_path / "a.mp4"), 3)]
    csv.write_text("a.mp4 cat\n")
    with pytest.raises(ValueError, match="label must be an integer"):
        read_list(csv)
    with pytest.raises(FileNotFoundError):
        read_list(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="dataset_fpcs"):
        VideoDataset([csv, csv], [16], raw)


def test_image_folder_gives_single_tubelet_clips(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((40, 30, 3), 50 * i, np.uint8))
    ds = VideoDataset([folder], [16], raw, tubelet_size=2)
    clips, _, idx = ds[2]
    assert clips[0].shape == (3, 2, 40, 30) and float(clips[0].mean()) == 100.0
    assert ds.fpcs == [2] and idx[0].tolist() == [0, 0]


def test_train_transform_flip_normalise_and_reproducibility(video):
    frames = np.zeros((4, 60, 80, 3), np.uint8)
    frames[:, :, :40] = 255  # left half white
    tf = VideoTrainTransform(32, random_resize_scale=(1.0, 1.0), random_resize_aspect_ratio=(4 / 3, 4 / 3))
    white = (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    sides = set()
    for seed in range(8):
        x = tf(frames, np.random.default_rng(seed))
        assert x.shape == (3, 4, 32, 32)
        sides.add("left" if abs(float(x[0, 0, 0, 0]) - white) < 1e-4 else "right")
    assert sides == {"left", "right"}  # flipped in some draws, not in others
    with pytest.raises(ValueError, match="random_resize_scale"):
        VideoTrainTransform(32, random_resize_scale=(0.0, 1.0))
    ds = VideoDataset([video[0]], [8], VideoTrainTransform(32), frame_step=2, seed=5)
    a, b = ds[0], ds[0]
    ds.set_epoch(1)
    c = ds[0]
    assert torch.equal(a[0][0], b[0][0]) and np.array_equal(a[2][0], b[2][0])  # same (seed, epoch, index)
    assert not torch.equal(a[0][0], c[0][0])  # a new epoch draws a new clip/crop


def test_multiple_clip_lengths_through_the_mask_collator(tmp_path):
    csv_a, _ = write_moving_shapes_dataset(tmp_path / "a", 3, num_frames=24, size=48)
    csv_b, _ = write_moving_shapes_dataset(tmp_path / "b", 3, num_frames=24, size=48, seed=1)
    tf = VideoTrainTransform(32)
    ds = VideoDataset([csv_a, csv_b], dataset_fpcs=[8, 4], transform=tf, frame_step=2)
    assert ds.fpcs == [8, 4]
    coll = MultiSeqMaskCollator(VJEPA2_MASK_CFGS, dataset_fpcs=ds.fpcs, crop_size=32)
    loader = DataLoader(ds, batch_size=6, shuffle=False, num_workers=2, collate_fn=coll)
    (groups,) = list(loader)
    assert [g[0][0][0].shape for g in groups] == [(3, 3, 8, 32, 32), (3, 3, 4, 32, 32)]
    assert groups[0][0][2][0].shape == (3, 8) and len(groups[1][1]) == 2
    assert ds.skipped == {"unreadable": 0, "too_short": 0}


def test_dataset_weights_mix_sources_reproducibly(tmp_path):
    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    a.write_text("".join(f"a{i}.mp4\n" for i in range(30)))
    b.write_text("".join(f"b{i}.mp4\n" for i in range(3)))
    ds = VideoDataset([a, b], [8, 8], raw)
    sampler = WeightedResumableSampler(ds.sample_weights([0.2, 0.8]), per_rank=2000, seed=1)
    sampler.set_epoch(3)
    draws = list(sampler)
    share_b = np.mean([ds.entries[i].source == 1 for i in draws])
    assert abs(share_b - 0.8) < 0.04  # 3 videos get 80 % of the draws, as weighted
    sampler.set_epoch(3, start_sample=500)
    assert list(sampler) == draws[500:] and len(sampler) == 1500
    other = WeightedResumableSampler(ds.sample_weights([0.2, 0.8]), per_rank=2000, rank=1, world_size=2, seed=1)
    other.set_epoch(3)
    assert list(other) != draws
    with pytest.raises(ValueError, match="datasets_weights"):
        ds.sample_weights([1.0])
