"""Probe datasets on real files (MP4 lists, PNG class folders, an EK100-layout set) and the probe training
transforms."""

import numpy as np
import pytest
import torch

from vjepa2_core.data.ek100 import ClassMaps, EK100Anticipation, parse_timestamp, read_annotations
from vjepa2_core.data.labeled_video import (
    ImageFolderDataset,
    VideoListDataset,
    eval_as_clip_transform,
    segment_indices,
)
from vjepa2_core.data.motion_direction import (
    direction_class,
    write_direction_dataset,
    write_ek100_toy,
    write_quadrant_images,
    write_shape_images,
)
from vjepa2_core.data.synthetic_videos import SHAPES, moving_shape_frames
from vjepa2_core.data.transforms import RAND_AUGMENT_OPS, ProbeTrainTransform, _rand_op, eval_video_transform
from vjepa2_core.data.video import read_frames


def test_segment_indices_partition_and_overlap():
    # 40 frames, 2 segments of 4 frames step 2 (span 7): partitions [0,20) and [20,40); eval starts at each start
    segs = segment_indices(40, 4, 2, 2, rng=None)
    assert [s.tolist() for s in segs] == [[0, 2, 4, 6], [20, 22, 24, 26]]
    rng = np.random.default_rng(0)
    for s, lo in zip(segment_indices(40, 4, 2, 2, rng), (0, 20)):
        assert lo <= s[0] <= lo + 13 and np.all(np.diff(s) == 2)
    for seed in range(20):  # training starts rounded to a multiple: aligned 2-frame tubelets of held videos
        assert all(s[0] % 2 == 0 for s in segment_indices(40, 4, 1, 2, np.random.default_rng(seed), 2))
    # short video: evenly spread overlapping clips, indices past the end repeat the last frame
    segs = segment_indices(6, 4, 2, 3, rng=None)
    assert [s.tolist() for s in segs] == [[0, 2, 4, 5], [0, 2, 4, 5], [0, 2, 4, 5]]


def test_direction_labels_and_video_list_dataset(tmp_path):
    assert direction_class(np.array([1.0, 0.0])) == 0 and direction_class(np.array([0.0, -1.0])) == 2
    assert direction_class(np.array([-1.0, 1.0])) == 5
    csv = write_direction_dataset(tmp_path / "v", 8, num_frames=12, seed=0)
    labels = [int(line.split()[1]) for line in csv.read_text().split("\n") if line]
    assert sorted(labels) == list(range(8))  # balanced: one per class
    ds = VideoListDataset(csv, eval_as_clip_transform(eval_video_transform(32, num_views=2)), 4, 2, num_segments=2)
    clips, label, indices = ds[3]
    assert label == labels[3] and len(clips) == 2 and len(clips[0]) == 2
    assert clips[0][0].shape == (3, 4, 32, 32) and [i.tolist() for i in indices] == [[0, 2, 4, 6], [5, 7, 9, 11]]
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch[0][1][0].shape == (2, 3, 4, 32, 32) and batch[2][0].shape == (2, 4)


def test_held_frames_make_still_tubelets(tmp_path):
    csv = write_direction_dataset(tmp_path / "h", 1, num_frames=4, seed=0, hold=2)
    frames = read_frames(tmp_path / "h" / csv.read_text().split()[0], list(range(8)))
    assert np.abs(frames[0].astype(int) - frames[1]).mean() < 2 < np.abs(frames[1].astype(int) - frames[2]).mean()


def test_busy_background_option_keeps_the_default_videos_and_adds_detail():
    frames, centres = moving_shape_frames(4, 64, seed=5)
    same, same_c = moving_shape_frames(4, 64, seed=5, background_max=80, background_cell=8)
    assert np.array_equal(frames, same) and np.array_equal(centres, same_c)  # the defaults are the old videos
    busy, _ = moving_shape_frames(4, 64, seed=5, background_max=256, background_cell=4)

    def colours(f):
        return len(np.unique(f.reshape(-1, 3), axis=0))

    assert colours(frames[0]) <= 8 * 8 + 1 < 200 < colours(busy[0])  # 8-px cells + disc vs 16 x 16 4-px cells
    assert frames[0].max(-1).mean() < 90 < busy[0].max(-1).mean()


def test_shape_images_and_a_faint_object(tmp_path):
    root = write_shape_images(tmp_path / "s", 6, size=32, seed=0)
    ds = ImageFolderDataset(root, eval_as_clip_transform(eval_video_transform(32)))
    assert sorted(p.name for p in root.iterdir()) == ["disc", "ring", "square"] and len(ds) == 6
    # one seed, three shapes: same background, colour and place; the square covers most, the ring least
    area = {}
    for shape in SHAPES:
        frames, _ = moving_shape_frames(1, 64, seed=3, shape=shape)
        area[shape] = int((frames[0].max(-1) >= 150).sum())  # object channels are >= 150, background < 80
    assert area["square"] > area["disc"] > area["ring"] > 0
    faint, _ = moving_shape_frames(1, 64, seed=3, colour_range=(60, 70))
    assert faint.max() < 80  # object as dim as the background's brightest cells
    with pytest.raises(ValueError, match="shape must be one of"):
        moving_shape_frames(1, 64, shape="star")


def test_image_folder_dataset(tmp_path):
    root = write_quadrant_images(tmp_path / "img", 12, size=32, seed=0)
    ds = ImageFolderDataset(root, eval_as_clip_transform(eval_video_transform(32)))
    assert ds.classes == sorted(p.name for p in root.iterdir())
    views, label = ds[0]
    assert views[0].shape == (3, 32, 32) and ds.classes[label] == ds.samples[0][0].split("/")[-2]


def test_ek100_layout_anticipation_window_and_labels(tmp_path):
    csv = write_ek100_toy(tmp_path, "train", 6, num_frames=16, fps=8.0, seed=0)
    assert parse_timestamp("00:01:02.50") == 62.5
    segs = read_annotations(csv, tmp_path)
    assert segs[0].video.endswith("P01/videos/P01_train000.MP4") and segs[0].start_s == pytest.approx(14 / 8)
    classes = ClassMaps.build(segs)
    assert len(classes.actions) == len({(s.verb, s.noun) for s in segs})
    ds = EK100Anticipation(segs, classes, eval_as_clip_transform(eval_video_transform(32)), 4, 8.0, 0.25)
    # action at 1.75 s, 0.25 s ahead -> the observed clip ends at frame 12
    assert ds.frame_indices(16, 8.0, 1.5).tolist() == [9, 10, 11, 12]
    views, verb, noun, action, a_time = ds[0]
    assert views[0].shape == (3, 4, 32, 32) and a_time == 0.25
    assert classes.labels(segs[0]) == (verb, noun, action)
    (tmp_path / "list.csv").write_text("video_id,label\nP01_01,3\n")  # a classification list, not EK100
    with pytest.raises(ValueError, match="needs columns"):
        read_annotations(tmp_path / "list.csv", tmp_path)


def test_probe_train_transform_is_seeded_and_each_op_keeps_shape():
    clip = np.random.default_rng(0).integers(0, 256, size=(4, 40, 56, 3), dtype=np.uint8)
    tf = ProbeTrainTransform(32, auto_augment=True, reprob=1.0, motion_shift=True, horizontal_flip=True)
    (a,) = tf(clip, np.random.default_rng(5))
    (b,) = tf(clip, np.random.default_rng(5))
    (c,) = tf(clip, np.random.default_rng(6))
    assert a.shape == (3, 4, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    x = torch.from_numpy(clip).permute(3, 0, 1, 2).float()
    for name in RAND_AUGMENT_OPS:
        y = _rand_op(x, name, 0.7, 1.0)
        assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 255, name
    assert torch.equal(_rand_op(x, "rotate", 0.0, 1.0).round(), x)  # level 0: no rotation
    plain = ProbeTrainTransform(32, (1.0, 1.0), (56 / 40, 56 / 40), auto_augment=False, reprob=0.0)
    (p,) = plain(clip, np.random.default_rng(0))
    (e,) = eval_video_transform(32, num_views=1)(np.repeat(clip[:, :, 8:48], 1, axis=0)[:, :, :40])
    assert p.shape == e.shape  # whole-frame crop, resized: same layout and normalisation as the eval path
    assert abs(float(p.mean()) - float(torch.from_numpy(clip).float().div(255).mean())) < 3.0
