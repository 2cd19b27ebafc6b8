"""`vjepa2-bag-play` in its own process publishes every bag message, byte-identical, with the recorded timing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Float64, Float64MultiArray

from vjepa2_ros.bags.reader import BagReader
from vjepa2_ros.bags.synthetic import synthetic_trajectory
from vjepa2_ros.bags.writer import Topics, write_trajectory_bag

pytestmark = pytest.mark.ros
PLAYER = str(Path(sys.executable).parent / "vjepa2-bag-play")
TYPES = {
    Topics.image: CompressedImage,
    Topics.pose: PoseStamped,
    Topics.gripper: Float64,
    Topics.action: Float64MultiArray,
}
RATE_HZ = 10.0


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    frames, states, actions = synthetic_trajectory(11, seed=4, size=48)
    path = tmp_path_factory.mktemp("play") / "bag"
    return write_trajectory_bag(path, frames, states, actions=actions, image_format="jpeg", rate=RATE_HZ)


class Recorder:
    """A node in the test process that keeps the raw CDR bytes and arrival time of everything it receives."""

    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("bag_play_test_subscriber", context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list[tuple[float, bytes]]] = {t: [] for t in TYPES}
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        for topic, msg_type in TYPES.items():
            self.node.create_subscription(msg_type, topic, self._callback(topic), qos, raw=True)

    def _callback(self, topic):
        return lambda data: self.received[topic].append((time.monotonic(), bytes(data)))

    def spin_until(self, done, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return done()

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def recorder():
    rec = Recorder()
    yield rec
    rec.close()


def _stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("bag player did not exit on SIGTERM")
    return proc.returncode


def test_every_message_delivered_with_recorded_timing(bag, recorder):
    with BagReader(bag) as reader:
        expected = {t: [m.data for m in reader.messages([t])] for t in TYPES}
    rate = 2.0
    proc = subprocess.Popen(
        [PLAYER, str(bag), "--rate", str(rate), "--wait-for-subscribers", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    try:
        total = sum(len(v) for v in expected.values())
        ok = recorder.spin_until(lambda: sum(len(v) for v in recorder.received.values()) >= total, timeout=60)
        assert proc.wait(timeout=30) == 0
    finally:
        _stop(proc)
    log = proc.stdout.read()
    assert ok, f"received {[len(v) for v in recorder.received.values()]} of {total}; player said:\n{log}"
    for topic, datas in expected.items():
        got = [d for _, d in recorder.received[topic]]
        assert len(got) == len(datas), topic
        for data, sent in zip(got, datas):  # the middleware may pad the CDR stream to a multiple of 4 bytes
            assert data[: len(sent)] == sent and len(data) - len(sent) < 4 and not data[len(sent) :].strip(b"\0")
    arrivals = np.array([t for t, _ in recorder.received[Topics.image]])
    recorded_span = (len(arrivals) - 1) / RATE_HZ / rate  # 1 s of bag at 10 Hz, played twice as fast
    assert recorded_span * 0.8 <= arrivals[-1] - arrivals[0] <= recorded_span + 2.0
    assert np.diff(arrivals).min() > 0.2 / RATE_HZ / rate  # paced, not dumped at once
    assert f"done: {total} messages published" in log


def test_loop_until_sigterm(bag, recorder):
    proc = subprocess.Popen(
        [PLAYER, str(bag), "--rate", "20", "--loop", "--topics", Topics.pose, "--wait-for-subscribers", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    try:
        looped = recorder.spin_until(lambda: len(recorder.received[Topics.pose]) >= 25, timeout=60)
    finally:
        rc = _stop(proc)
    assert looped, proc.stdout.read()
    assert rc == 0  # SIGTERM ends playback cleanly
    assert recorder.received[Topics.image] == []  # only the selected topic is played
    with BagReader(bag) as reader:
        n = reader.count(Topics.pose)
    poses = [d for _, d in recorder.received[Topics.pose]]
    assert len(set(poses)) == n and all(poses[i] == poses[i + n] for i in range(len(poses) - n))  # passes repeat


def test_bad_bag_is_a_clear_error(tmp_path):
    res = subprocess.run([PLAYER, str(tmp_path / "missing")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "bag not found" in res.stderr and "Traceback" not in res.stderr
    frames, states, _ = synthetic_trajectory(2, size=16)
    bag = write_trajectory_bag(tmp_path / "bag", frames, states)
    res = subprocess.run([PLAYER, str(bag), "--topics", "/nope"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "topic '/nope' not in bag" in res.stderr and "Traceback" not in res.stderr


def test_restamp_sets_header_time_to_now(bag, recorder):
    from rclpy.serialization import deserialize_message

    started = time.time()
    proc = subprocess.Popen(
        [PLAYER, str(bag), "--rate", "50", "--topics", Topics.pose, "--restamp", "--wait-for-subscribers", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    try:
        with BagReader(bag) as reader:
            n = reader.count(Topics.pose)
            recorded = [reader.deserialize(msg) for msg in reader.messages([Topics.pose])]
        done = recorder.spin_until(lambda: len(recorder.received[Topics.pose]) >= n, timeout=60)
        assert proc.wait(timeout=30) == 0
    finally:
        _stop(proc)
    assert done, proc.stdout.read()
    for data, original in zip([d for _, d in recorder.received[Topics.pose]], recorded):
        msg = deserialize_message(data, PoseStamped)
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        assert started - 1 <= stamp <= time.time() + 1  # restamped to the wall clock, not 2023 bag time
        assert msg.pose.position.x == original.pose.position.x and msg.header.frame_id == original.header.frame_id


def _qos(reliability: str, durability: str):
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    never = QosTime(sec=0, nsec=0)
    return Qos(
        QosHistory.KEEP_LAST, 10, QosReliability[reliability], QosDurability[durability], never, never,
        QosLiveliness.AUTOMATIC, never, False,
    )  # fmt: skip


def test_playback_qos_follows_what_the_recorded_publishers_offered():
    from rclpy.qos import DurabilityPolicy

    from vjepa2_ros.bags.bag_play import playback_qos

    best_effort = playback_qos([_qos("BEST_EFFORT", "VOLATILE")], 5)
    assert best_effort.reliability == ReliabilityPolicy.BEST_EFFORT and best_effort.depth == 5
    latched = playback_qos([_qos("RELIABLE", "TRANSIENT_LOCAL")] * 2, 5)
    assert latched.reliability == ReliabilityPolicy.RELIABLE and latched.durability == DurabilityPolicy.TRANSIENT_LOCAL
    mixed = playback_qos([_qos("RELIABLE", "TRANSIENT_LOCAL"), _qos("BEST_EFFORT", "VOLATILE")], 5)
    assert mixed.reliability == ReliabilityPolicy.BEST_EFFORT and mixed.durability == DurabilityPolicy.VOLATILE
    default = playback_qos([], 5)
    assert default.reliability == ReliabilityPolicy.RELIABLE and default.durability == DurabilityPolicy.VOLATILE
    assert playback_qos([], 5, latch=True).durability == DurabilityPolicy.TRANSIENT_LOCAL


def test_player_offers_the_recorded_qos(tmp_path, recorder):
    from vjepa2_ros.bags.writer import trajectory_records, write_bag

    frames, states, _ = synthetic_trajectory(3, size=16)
    records = trajectory_records(frames, states, image_format="jpeg")
    bag = write_bag(tmp_path / "bag", records, offered_qos={Topics.image: [_qos("BEST_EFFORT", "VOLATILE")]})
    with BagReader(bag) as reader:
        assert [p.reliability.name for p in reader.offered_qos(Topics.image)] == ["BEST_EFFORT"]
        assert reader.offered_qos(Topics.pose) == []
    proc = subprocess.Popen(
        [PLAYER, str(bag), "--loop", "--rate", "5"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        info = {}

        def offered() -> bool:
            for topic in (Topics.image, Topics.pose):
                pubs = recorder.node.get_publishers_info_by_topic(topic)
                if pubs:
                    info[topic] = pubs[0].qos_profile.reliability
            return len(info) == 2

        assert recorder.spin_until(offered, timeout=30), proc.stdout.read() if proc.poll() is not None else info
    finally:
        assert _stop(proc) == 0
    assert info == {Topics.image: ReliabilityPolicy.BEST_EFFORT, Topics.pose: ReliabilityPolicy.RELIABLE}
