"""`vjepa2-bag-play`: publish a bag's messages on their topics with the recorded timing (no `ros2 bag play` on pip).

Messages go out as the recorded CDR bytes (no re-encoding), so subscribers get exactly what was recorded, unless
--restamp sets header stamps to now (for nodes that reject stale data, such as the planner's staleness check).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time
from typing import Any

import rclpy
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from vjepa2_ros.bags.reader import TYPESTORE, BagError, BagMessage, BagReader


def message_class(msgtype: str) -> Any:
    """'sensor_msgs/msg/Image' -> the rclpy message class (ImportError/AttributeError when not installed)."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def playback_qos(offered: list[Any], depth: int, latch: bool = False) -> QoSProfile:
    """The publisher QoS for a recorded topic: what every recorded publisher offered, as `ros2 bag play` does.

    Reliable only if every recorded publisher was (a best-effort camera stays best-effort, so subscribers that ask
    for best effort still match and a reliable one is not promised what the robot never gave); transient-local
    only if every one was, or with `latch`. A bag without profiles plays reliable and volatile.
    """
    from rosbags.interfaces import QosDurability, QosReliability

    reliable = all(p.reliability == QosReliability.RELIABLE for p in offered)
    transient = bool(offered) and all(p.durability == QosDurability.TRANSIENT_LOCAL for p in offered)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latch or transient else DurabilityPolicy.VOLATILE,
    )


class BagPlayer(Node):
    """Publishes every message of a bag at its recorded time offset divided by `rate`."""

    def __init__(
        self,
        bag: str,
        rate: float = 1.0,
        loop: bool = False,
        topics: list[str] | None = None,
        qos_depth: int = 100,
        latch: bool = False,
        restamp: bool = False,
        clock: bool = False,
    ):
        super().__init__("vjepa2_bag_play")
        if rate <= 0:
            raise ValueError(f"--rate must be > 0, got {rate}")
        self.reader = BagReader(bag)
        self.rate, self.loop, self.restamp = rate, loop, restamp
        self.publishers_: dict[str, Any] = {}
        available = self.reader.topics
        for topic in topics or sorted(available):
            msgtype = self.reader.msgtype(topic)  # BagError listing the bag's topics if absent
            qos = playback_qos(self.reader.offered_qos(topic), qos_depth, latch)
            try:
                self.publishers_[topic] = self.create_publisher(message_class(msgtype), topic, qos)
            except (ImportError, AttributeError, ValueError) as err:
                self.get_logger().warning(f"not playing {topic}: message type {msgtype} unavailable ({err})")
        if not self.publishers_:
            raise BagError(f"none of the bag's topics can be published from {bag}")
        self.clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock

            self.clock_pub = self.create_publisher(Clock, "/clock", 10)
        self.published = 0
        self.skipped = 0

    def wait_for_subscribers(self, timeout: float) -> bool:
        """Spin until every topic has a subscriber (or `timeout` s); True when all are matched."""
        deadline = time.monotonic() + timeout
        while rclpy.ok() and time.monotonic() < deadline:
            if all(p.get_subscription_count() > 0 for p in self.publishers_.values()):
                return True
            rclpy.spin_once(self, timeout_sec=0.05)
        return False

    def play_once(self) -> None:
        """One pass over the bag, sleeping (while spinning) until each message's scaled recorded time."""
        start_wall, start_bag = time.monotonic(), None
        for msg in self.reader.messages(list(self.publishers_)):
            start_bag = msg.timestamp if start_bag is None else start_bag
            due = start_wall + (msg.timestamp - start_bag) / 1e9 / self.rate
            while rclpy.ok() and (remaining := due - time.monotonic()) > 0:
                rclpy.spin_once(self, timeout_sec=min(remaining, 0.1))
            if not rclpy.ok():
                return
            self._publish(msg)

    def _publish(self, msg: BagMessage) -> None:
        data = msg.data
        if self.restamp:
            try:
                data = self._restamped(msg)
            except BagError as err:
                self.skipped += 1
                self.get_logger().warning(f"skipping a message on {msg.topic}: {err}")
                return
        if self.clock_pub is not None:
            self.clock_pub.publish(self._clock(msg.timestamp))
        self.publishers_[msg.topic].publish(data)
        self.published += 1

    def _restamped(self, msg: BagMessage) -> bytes:
        obj = self.reader.deserialize(msg)
        if getattr(obj, "header", None) is None:
            return msg.data
        now = self.get_clock().now().nanoseconds
        obj.header.stamp.sec, obj.header.stamp.nanosec = divmod(now, 1_000_000_000)
        return bytes(TYPESTORE.serialize_cdr(obj, msg.msgtype))

    @staticmethod
    def _clock(stamp: int) -> Any:
        from rosgraph_msgs.msg import Clock

        clock = Clock()
        clock.clock.sec, clock.clock.nanosec = divmod(stamp, 1_000_000_000)
        return clock

    def finish(self, timeout: float = 5.0) -> None:
        """Wait until reliable subscribers acknowledged everything, so exiting loses no message in flight."""
        for pub in self.publishers_.values():
            pub.wait_for_all_acked(Duration(seconds=timeout))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vjepa2-bag-play", description=__doc__.splitlines()[0])
    p.add_argument("bag", help="rosbag2 directory (MCAP or sqlite3)")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (2 = twice as fast)")
    p.add_argument("--loop", action="store_true", help="start over at the end until interrupted")
    p.add_argument("--topics", nargs="+", help="only these topics (default: all)")
    p.add_argument(
        "--wait-for-subscribers",
        type=float,
        default=0.0,
        metavar="SEC",
        help="before playing, wait up to SEC for a subscriber on every topic",
    )
    p.add_argument("--qos-depth", type=int, default=100)
    p.add_argument("--latch", action="store_true", help="transient-local publishers (late joiners get history)")
    p.add_argument("--restamp", action="store_true", help="set header stamps to the current time")
    p.add_argument("--clock", action="store_true", help="publish the bag time on /clock (for use_sim_time)")
    return p


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(rclpy.utilities.remove_ros_args(["prog", *argv])[1:])
    signal.signal(signal.SIGTERM, _interrupt)  # rclpy chains to this: SIGTERM ends playback cleanly like Ctrl-C
    rclpy.init(args=["prog", *argv])
    player = None
    try:
        player = BagPlayer(
            args.bag, args.rate, args.loop, args.topics, args.qos_depth, args.latch, args.restamp, args.clock
        )
        log = player.get_logger()
        log.info(f"playing {args.bag}: {len(player.publishers_)} topics at rate x{args.rate}")
        if args.wait_for_subscribers > 0 and not player.wait_for_subscribers(args.wait_for_subscribers):
            log.warning(f"not every topic has a subscriber after {args.wait_for_subscribers} s; playing anyway")
        while rclpy.ok():
            player.play_once()
            if not args.loop:
                break
        player.finish()
        log.info(f"done: {player.published} messages published, {player.skipped} skipped")
        return 0
    except (BagError, ValueError) as err:
        print(f"vjepa2-bag-play: error: {err}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        if player is not None:
            player.reader.close()
            player.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
