"""The planner node's outputs: the commands ~/ee_target, ~/ee_twist and ~/gripper_command with the twist watchdog,
and the plan views ~/planned_path and ~/debug_image.

Every command, a republished twist included, passes `CommandGate.decide` with the gate's lock held through the
publish, so once stop or deactivate has returned nothing checked before it goes out after it; a refusal is
counted (`dropped_commands`) and its reasons reported in diagnostics. What the watchdog sends on each tick is
`vjepa2_core.planning.watchdog.TwistWatchdog`'s decision; this module only publishes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped
from nav_msgs.msg import Path
from sensor_msgs.msg import Image
from std_msgs.msg import Float64

from vjepa2_core.planning.gate import GateDecision
from vjepa2_core.planning.watchdog import TwistWatchdog
from vjepa2_ros import conversions as conv
from vjepa2_ros.ros_utils import debug_view

if TYPE_CHECKING:
    from vjepa2_ros.planner_node import PlannerNode


class Command(NamedTuple):
    """One step's command as planned: the gate decides on it again each time it would be sent."""

    episode: int
    cancelled: Callable[[], object]  # truthy once the goal that planned it is cancelled
    state: np.ndarray
    action: np.ndarray
    frame_id: str


class CommandSender:
    """Publishes commands that the node's gate allows at the moment of sending, and runs the twist watchdog."""

    def __init__(self, node: PlannerNode, topics: dict[str, str]) -> None:
        self.node = node
        self.watchdog = TwistWatchdog()
        # lifecycle publishers: silent unless the node is active
        self.pub_target = node.create_lifecycle_publisher(PoseStamped, topics["ee_target"], 10)
        self.pub_twist = node.create_lifecycle_publisher(TwistStamped, topics["ee_twist"], 10)
        self.pub_gripper = node.create_lifecycle_publisher(Float64, topics["gripper_command"], 10)

    def check(self, command: Command) -> GateDecision:
        """The gate's decision on `command` now; call with the gate's lock held through the publish. A drop is
        counted and its reasons reported in diagnostics."""
        node = self.node
        _, reasons = node.assess()
        decision = node.gate.decide(
            episode=command.episode,
            cancelled=bool(command.cancelled()),
            state=command.state,
            action=command.action,
            input_reasons=reasons,
            limits=node.settings.limits,
        )
        if not decision.allowed:
            node.stats.dropped(decision.reasons)
            node.get_logger().warning(
                "command dropped at send time: " + ", ".join(decision.reasons), throttle_duration_sec=1.0
            )
        return decision

    def send(self, command: Command) -> GateDecision:
        """ee_target, ee_twist and gripper_command of one step, if the gate allows them at this moment (the
        decision's action is the step limited again by the current limits); nothing is published otherwise."""
        node = self.node
        with node.gate.lock:
            decision = self.check(command)
            if not decision.allowed:
                return decision
            s, stamp = node.settings, node.get_clock().now().to_msg()
            target = conv.compose(command.state, decision.action)
            frame = s.frame_id or command.frame_id
            self.pub_target.publish(conv.state_to_pose_stamped(target, frame, stamp))
            self.pub_twist.publish(conv.action_to_twist(decision.action, 1.0 / s.control_rate, frame, stamp))
            self.pub_gripper.publish(Float64(data=float(target[6])))
            node.stats.count("commands")
            self.watchdog.sent(command, frame, time.monotonic())
        return decision

    def on_watchdog(self) -> None:
        """Republish the in-flight step's twist; once it is older than the timeout, a few zero twists, then none."""
        node = self.node
        with node.gate.lock:  # a republished step passes the gate like a new one
            tick = self.watchdog.tick(time.monotonic(), node.settings.watchdog_timeout)
            if tick is None:
                return
            out = TwistStamped()  # zero: the stream is ending
            if not tick.zero:
                decision = self.check(tick.command)
                if not decision.allowed:
                    self.halt(now=True)
                    return
                out = conv.action_to_twist(decision.action, 1.0 / node.settings.control_rate, "", out.header.stamp)
            out.header.frame_id = tick.frame
            out.header.stamp = node.get_clock().now().to_msg()
            self.pub_twist.publish(out)

    def halt(self, now: bool = False) -> None:
        """End the twist stream: zero twists from the next watchdog tick (`now`: one right away as well)."""
        frame = self.watchdog.halt()
        if frame is not None and now and self.node.settings.watchdog_rate > 0:
            zero = TwistStamped()
            zero.header.frame_id, zero.header.stamp = frame, self.node.get_clock().now().to_msg()
            self.pub_twist.publish(zero)


class PlanViews:
    """What a plan looks like, for people: the planned path and the current | goal debug image (built only when
    someone subscribes)."""

    def __init__(self, node: PlannerNode) -> None:
        self.node = node
        self.pub_path = node.create_publisher(Path, "~/planned_path", 1)
        self.pub_debug = node.create_publisher(Image, "~/debug_image", 1)

    def publish(self, obs_image, goal, state, actions, energy: float, frame_id: str) -> None:
        stamp = self.node.get_clock().now().to_msg()
        frame = self.node.settings.frame_id or frame_id
        if self.pub_path.get_subscription_count():
            self.pub_path.publish(conv.plan_to_path(state, actions, frame, stamp))
        if self.pub_debug.get_subscription_count():
            view = debug_view(obs_image, goal, f"energy {energy:.4f}")
            self.pub_debug.publish(conv.rgb_to_image(view, "rgb8", stamp, frame))
