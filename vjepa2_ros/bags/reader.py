"""Opening rosbag2 recordings (MCAP or sqlite3) with `rosbags`, with errors that say what is wrong with the bag."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Connection
from rosbags.typesys import Stores, get_typestore

TYPESTORE = get_typestore(Stores.ROS2_KILTED)


class BagError(RuntimeError):
    """A bag that cannot be used: missing, corrupt, lacking a topic or holding an unsupported message type."""


@dataclass(frozen=True)
class BagMessage:
    """One raw message: topic, ROS type name, bag receive time (ns) and CDR bytes."""

    topic: str
    msgtype: str
    timestamp: int
    data: bytes


class BagReader:
    """A rosbag2 recording opened for reading; use as a context manager.

    Wraps `AnyReader` so that every failure (no such path, no metadata, corrupt storage) becomes a `BagError`
    naming the bag, and message definitions fall back to the ROS 2 Kilted typestore.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag not found: {self.path}")
        if self.path.is_dir() and not (self.path / "metadata.yaml").is_file():
            raise BagError(f"{self.path} is not a rosbag2 directory (no metadata.yaml)")
        try:
            self._reader = AnyReader([self.path], default_typestore=TYPESTORE)
            self._reader.open()
        except (AnyReaderError, FileNotFoundError, OSError, ValueError, KeyError) as err:
            raise BagError(f"cannot read bag {self.path}: {err or type(err).__name__}") from err
        except Exception as err:  # noqa: BLE001 - rosbags raises many types on corrupt storage
            raise BagError(f"cannot read bag {self.path} (corrupt?): {type(err).__name__}: {err}") from err

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()

    @property
    def topics(self) -> dict[str, str]:
        """Topic name -> ROS message type (e.g. 'sensor_msgs/msg/Image')."""
        return {c.topic: c.msgtype for c in self._reader.connections}

    @property
    def start_time(self) -> int:
        return self._reader.start_time

    @property
    def end_time(self) -> int:
        return self._reader.end_time

    @property
    def message_count(self) -> int:
        return self._reader.message_count

    def count(self, topic: str) -> int:
        return sum(c.msgcount for c in self._connections([topic]))

    def msgtype(self, topic: str) -> str:
        """Message type of `topic`, or a BagError listing the topics that do exist."""
        topics = self.topics
        if topic not in topics:
            listing = ", ".join(f"{t} [{m}]" for t, m in sorted(topics.items())) or "none"
            raise BagError(f"topic {topic!r} not in bag {self.path}; topics: {listing}")
        return topics[topic]

    def offered_qos(self, topic: str) -> list[Any]:
        """QoS profiles (rosbags `Qos`) the recorded publishers of `topic` offered; empty when the bag has none."""
        profiles: list[Any] = []
        for conn in self._connections([topic]):
            profiles.extend(getattr(conn.ext, "offered_qos_profiles", None) or [])
        return profiles

    def _connections(self, topics: Iterable[str] | None) -> list[Connection]:
        if topics is None:
            return list(self._reader.connections)
        wanted = set(topics)
        for topic in wanted:
            self.msgtype(topic)
        return [c for c in self._reader.connections if c.topic in wanted]

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
        """Raw messages of `topics` (all when None) in receive-time order."""
        conns = self._connections(topics)
        try:
            for conn, timestamp, data in self._reader.messages(connections=conns):
                yield BagMessage(conn.topic, conn.msgtype, timestamp, bytes(data))
        except BagError:
            raise
        except Exception as err:  # noqa: BLE001 - storage errors surface lazily while iterating
            raise BagError(f"bag {self.path} is corrupt or truncated: {type(err).__name__}: {err}") from err

    def deserialize(self, message: BagMessage) -> Any:
        """CDR bytes -> rosbags message object (raises BagError for undecodable data)."""
        try:
            return self._reader.deserialize(message.data, message.msgtype)
        except Exception as err:  # noqa: BLE001 - the deserializer raises assorted errors on garbage
            raise BagError(
                f"undecodable {message.msgtype} on {message.topic} at t={message.timestamp}: {err}"
            ) from err
