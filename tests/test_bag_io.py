"""rosbag2 reading/writing (MCAP and sqlite3), time alignment and the errors users see on bad bags."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from vjepa2_ros.bags import messages as m
from vjepa2_ros.bags.alignment import NS, control_grid, nearest_within
from vjepa2_ros.bags.reader import BagError, BagReader
from vjepa2_ros.bags.synthetic import synthetic_trajectory
from vjepa2_ros.bags.trajectory import load_aligned
from vjepa2_ros.bags.writer import Topics, trajectory_records, write_bag, write_trajectory_bag

STORAGES = ["mcap", "sqlite3"]


@pytest.fixture(scope="module")
def traj():
    return synthetic_trajectory(12, seed=3, size=48)


def test_nearest_within_and_grid():
    stamps = np.array([0, 100, 200, 290], dtype=np.int64)
    idx = nearest_within(stamps, np.array([-5, 49, 51, 150, 245, 300, 400]), tolerance_ns=20)
    assert idx.tolist() == [0, -1, -1, -1, -1, 3, -1]
    idx = nearest_within(stamps, np.array([49, 51, 245, 246]), tolerance_ns=60)
    assert idx.tolist() == [0, 1, 2, 3]  # ties go to the earlier sample: 245 is 45 from both
    assert nearest_within(np.zeros(0, np.int64), np.array([1, 2]), 10).tolist() == [-1, -1]
    grid = control_grid(10 * NS, 11 * NS, 4.0)
    assert (np.diff(grid) == NS // 4).all() and grid[0] == 10 * NS and grid[-1] == 11 * NS
    with pytest.raises(ValueError, match="positive"):
        control_grid(0, 1, 0.0)


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("fmt", ["rgb8", "png"])
def test_roundtrip_states_frames_actions(tmp_path, traj, storage, fmt):
    frames, states, actions = traj
    bag = write_trajectory_bag(tmp_path / "bag", frames, states, storage=storage, actions=actions, image_format=fmt)
    with BagReader(bag) as reader:
        assert reader.topics[Topics.image] == (m.IMAGE if fmt == "rgb8" else m.COMPRESSED)
        assert reader.count(Topics.pose) == len(states) and reader.count(Topics.action) == len(actions)
    aligned = load_aligned(bag, rate=4.0)
    assert len(aligned) == len(states) and aligned.valid.all() and aligned.action_source == "recorded"
    np.testing.assert_allclose(aligned.states, states, atol=1e-9)
    np.testing.assert_allclose(aligned.actions[:-1], actions, atol=1e-12)
    assert np.isnan(aligned.actions[-1]).all()  # no command after the last frame
    got = dict(aligned.frames())
    assert sorted(got) == list(range(len(frames)))
    for i, frame in got.items():
        np.testing.assert_array_equal(frame, frames[i])  # rgb8 and png are lossless


def test_actions_from_states_when_not_recorded(tmp_path, traj):
    frames, states, actions = traj
    bag = write_trajectory_bag(tmp_path / "bag", frames, states, actions=None)
    aligned = load_aligned(bag, rate=4.0)
    assert aligned.action_source == "states"
    np.testing.assert_allclose(aligned.actions[:-1], actions, atol=1e-9)


def test_gaps_are_counted_not_fatal(tmp_path, traj):
    frames, states, actions = traj
    drop = {"image": [2, 3], "pose": [6], "gripper": [9]}
    bag = write_trajectory_bag(tmp_path / "bag", frames, states, actions=actions, drop=drop)
    aligned = load_aligned(bag, rate=4.0)
    assert aligned.skip_counts() == {"no_image": 2, "no_pose": 1, "no_gripper": 1}
    assert [s for s, _ in aligned.frames()] == [s for s in range(len(frames)) if s not in (2, 3, 6, 9)]


def test_faster_sensors_are_subsampled_to_the_control_rate(tmp_path, traj):
    """Camera and pose at 20 Hz with jitter, model at 4 Hz: each grid step takes the nearest sample."""
    frames, states, _ = traj
    rng = np.random.default_rng(0)
    t0, records = 5 * NS, []
    for i in range(len(frames) * 5):
        t = t0 + i * NS // 20 + int(rng.integers(-3, 4)) * 1_000_000
        k = i // 5
        msg, msgtype = m.image_msg(frames[k], t)
        records += [(Topics.image, t, msg, msgtype), (Topics.pose, t + 500_000, m.pose_msg(states[k, :6], t), m.POSE)]
        records.append((Topics.gripper, t + 700_000, m.float_msg(states[k, 6]), m.FLOAT64))
    bag = write_bag(tmp_path / "bag", records, storage="sqlite3")
    aligned = load_aligned(bag, rate=4.0, tolerance=0.02)
    assert aligned.valid.all() and len(aligned) == len(frames)
    np.testing.assert_allclose(aligned.states, states, atol=1e-9)
    for step, frame in aligned.frames():
        np.testing.assert_array_equal(frame, frames[step])


def test_header_stamps(tmp_path, traj):
    frames, states, _ = traj
    records = trajectory_records(frames, states)
    late = [(topic, t + 30_000_000 if topic != Topics.gripper else t, msg, mt) for topic, t, msg, mt in records]
    bag = write_bag(tmp_path / "bag", late)  # delivered 30 ms late, header stamps are the true times
    assert load_aligned(bag, stamps="header", tolerance=0.005).valid.all()
    by_receive_time = load_aligned(bag, stamps="receive", tolerance=0.005)
    assert set(by_receive_time.skip_counts()) == {"no_gripper"} and not by_receive_time.valid.any()


def test_franka_real_images_roundtrip(tmp_path, franka_npz):
    data = np.load(franka_npz)
    frames, states = data["observations"][0], data["states"][0].astype(np.float64)
    bag = write_trajectory_bag(tmp_path / "bag", frames, states, storage="sqlite3", image_format="jpeg")
    aligned = load_aligned(bag)
    np.testing.assert_allclose(aligned.states, states, atol=1e-6)
    np.testing.assert_allclose(aligned.actions[0, :3], states[1, :3] - states[0, :3], atol=1e-6)
    for i, frame in aligned.frames():
        assert np.abs(frame.astype(int) - frames[i]).mean() < 3.0  # jpeg q95 on a real camera image


def test_bad_bags_give_clear_errors(tmp_path, traj):
    frames, states, _ = traj
    with pytest.raises(BagError, match="not found"):
        BagReader(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="no metadata.yaml"):
        BagReader(tmp_path / "empty")
    bag = write_trajectory_bag(tmp_path / "good", frames, states)
    with pytest.raises(BagError, match=r"topic '/camera/rgb' not in bag .*/ee_pose \[geometry_msgs/msg/PoseStamped\]"):
        load_aligned(bag, Topics(image="/camera/rgb"))
    with pytest.raises(BagError, match="has type geometry_msgs/msg/PoseStamped, expected one of"):
        load_aligned(bag, Topics(image="/ee_pose"))
    corrupt = tmp_path / "corrupt"
    shutil.copytree(bag, corrupt)
    mcap = next(corrupt.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    with pytest.raises(BagError, match="corrupt"):
        load_aligned(corrupt)


@pytest.mark.parametrize("storage", STORAGES)
def test_unsupported_encoding_is_reported(tmp_path, traj, storage):
    frames, states, _ = traj
    records = trajectory_records(frames, states)
    for topic, _, msg, _ in records:
        if topic == Topics.image:
            msg.encoding = "yuv422"  # same bytes, an encoding the decoder does not support
    bag = write_bag(tmp_path / "bag", records, storage=storage)
    aligned = load_aligned(bag)
    with pytest.raises(BagError, match="unsupported encoding 'yuv422'"):
        next(aligned.frames())


def test_planner_target_commands_and_no_gripper(tmp_path, traj):
    """Commands recorded as target poses (the planner's ~/ee_target + ~/gripper_command) become delta actions."""
    frames, states, actions = traj
    topics = Topics(action="/vjepa2_planner/ee_target", gripper_command="/vjepa2_planner/gripper_command")
    records = trajectory_records(frames, states)
    for i in range(len(actions)):
        t = records[0][1] + i * NS // 4 + 3_000_000
        records.append((topics.action, t, m.pose_msg(states[i + 1, :6], t), m.POSE))
        records.append((topics.gripper_command, t, m.float_msg(states[i + 1, 6]), m.FLOAT64))
    bag = write_bag(tmp_path / "bag", records)
    aligned = load_aligned(bag, topics)
    assert aligned.action_source == "recorded_targets"
    np.testing.assert_allclose(aligned.actions[:-1], actions, atol=1e-9)
    no_gripper = load_aligned(bag, Topics(gripper=""))
    assert no_gripper.valid.all() and (no_gripper.states[:, 6] == 0).all()
    np.testing.assert_allclose(no_gripper.states[:, :6], states[:, :6], atol=1e-9)


def test_undecodable_messages_are_counted(tmp_path, traj):
    frames, states, _ = traj
    records = trajectory_records(frames, states)
    poses = [i for i, r in enumerate(records) if r[0] == Topics.pose]
    topic, stamp, _, msgtype = records[poses[5]]
    records[poses[5]] = (topic, stamp, b"\x00\x01\x00\x00\x07", msgtype)  # truncated CDR instead of pose 5
    aligned = load_aligned(write_bag(tmp_path / "bag", records))
    assert dict(aligned.bad_messages) == {Topics.pose: 1}
    assert aligned.skip_counts() == {"no_pose": 1} and aligned.skip_reasons[5] == "no_pose"


def test_frames_come_in_step_order_when_delivery_is_reordered(tmp_path, traj):
    frames, states, _ = traj
    records = trajectory_records(frames, states)
    images = [i for i, r in enumerate(records) if r[0] == Topics.image]
    for a, b in ((images[2], images[3]), (images[7], images[8])):  # delivered swapped, header stamps are right
        ta, tb = records[a][1], records[b][1]
        records[a], records[b] = records[a][:1] + (tb,) + records[a][2:], records[b][:1] + (ta,) + records[b][2:]
    aligned = load_aligned(write_bag(tmp_path / "bag", records), stamps="header", tolerance=0.005)
    assert aligned.valid.all()
    got = list(aligned.frames())
    assert [s for s, _ in got] == list(range(len(frames)))
    for step, frame in got:
        np.testing.assert_array_equal(frame, frames[step])
