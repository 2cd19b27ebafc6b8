"""`vjepa2_sim`: the simulated Fetch arm as a ROS 2 robot (camera, end-effector pose, gripper, targets).

Publishes (node-private names, remap them to the planner's inputs):
  ~/image (sensor_msgs/Image rgb8), ~/ee_pose (PoseStamped), ~/gripper (Float64 closedness 0..1),
  ~/goal_image (Image, latched), ~/goal_pose (PoseStamped, latched), ~/goal_distance (Float64, metres).
Executes: ~/ee_target (PoseStamped, absolute position; orientation ignored) one clamped step per tick,
  ~/gripper_command (Float64 closedness 0..1). Service ~/subgoal_images (vjepa2_interfaces/SubgoalImages): the
  scripted oracle's way to the current goal as images, ending with the goal image (what ReachGoal.subgoal_images
  takes; on a real robot a user records them). Service ~/reset (std_srvs/Trigger) starts a new episode: the one
of the `seed` parameter if it was set since the last reset (`ros2 param set /vjepa2_sim seed 1003`, the episode
`vjepa2-sim-eval --seed 1003` runs first), else the next random one.
The pose orientation is relative to the reference grip frame (see vjepa2_ros.sim.env), so the euler triple
the planner derives from it stays near 0.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import Image
from std_msgs.msg import Float64
from std_srvs.srv import Trigger

from vjepa2_interfaces.srv import SubgoalImages
from vjepa2_ros.conversions import rgb_to_image, state_to_pose_stamped
from vjepa2_ros.ros_utils import ignore_sigint, quiet_sigint
from vjepa2_ros.sim.env import FetchSim, SimConfig, SimError

LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class SimNode(Node):
    """Steps the simulator at a fixed rate, publishes what a robot would, and follows end-effector targets."""

    def __init__(self) -> None:
        super().__init__("vjepa2_sim")
        self.declare_parameter("seed", 0)
        self.declare_parameter("task", "reach")
        self.declare_parameter("image_size", 64)
        self.declare_parameter("rate_hz", 10.0)
        self.declare_parameter("frame_id", "world")
        gp = self.get_parameter
        self.frame_id = gp("frame_id").value
        cfg = SimConfig(task=gp("task").value, image_size=int(gp("image_size").value))
        self.sim = FetchSim(cfg, seed=int(gp("seed").value))
        self.target: np.ndarray | None = None
        self.gripper_target: float | None = None

        self.pub_image = self.create_publisher(Image, "~/image", 10)
        self.pub_pose = self.create_publisher(PoseStamped, "~/ee_pose", 10)
        self.pub_gripper = self.create_publisher(Float64, "~/gripper", 10)
        self.pub_distance = self.create_publisher(Float64, "~/goal_distance", 10)
        self.pub_goal_image = self.create_publisher(Image, "~/goal_image", LATCHED)
        self.pub_goal_pose = self.create_publisher(PoseStamped, "~/goal_pose", LATCHED)
        self.create_subscription(PoseStamped, "~/ee_target", self.on_target, 10)
        self.create_subscription(Float64, "~/gripper_command", self.on_gripper, 10)
        self.create_service(Trigger, "~/reset", self.on_reset)
        self.create_service(SubgoalImages, "~/subgoal_images", self.on_subgoal_images)

        self._requested_seed: int | None = None
        self.add_on_set_parameters_callback(self.on_set_parameters)
        self.new_episode(int(gp("seed").value))
        self.create_timer(1.0 / max(float(gp("rate_hz").value), 1e-3), self.tick)
        self.get_logger().info(f"ready: task {cfg.task}, {cfg.image_size} px, seed {gp('seed').value}")

    def new_episode(self, seed: int | None = None) -> str:
        """Episode `seed` is the one `vjepa2-sim-eval` runs for that seed; None continues the random sequence."""
        self.sim.reset(seed=seed)
        self.target, self.gripper_target = None, None
        stamp = self.get_clock().now().to_msg()
        self.pub_goal_image.publish(rgb_to_image(self.sim.goal_image(), stamp=stamp, frame_id=self.frame_id))
        self.pub_goal_pose.publish(state_to_pose_stamped(self.sim.goal_state(), self.frame_id, stamp))
        return f"new episode: goal distance {self.sim.distance_to_goal():.3f} m"

    def on_target(self, msg: PoseStamped) -> None:
        p = msg.pose.position
        xyz = np.array([p.x, p.y, p.z])
        if not np.all(np.isfinite(xyz)):
            self.get_logger().warning(f"ignoring ee_target with non-finite position {xyz.tolist()}")
            return
        if msg.header.frame_id not in ("", self.frame_id):
            self.get_logger().warning(
                f"ignoring ee_target in frame {msg.header.frame_id!r} (expected {self.frame_id!r})"
            )
            return
        self.target = xyz

    def on_gripper(self, msg: Float64) -> None:
        if not math.isfinite(msg.data):
            self.get_logger().warning(f"ignoring non-finite gripper_command {msg.data}")
            return
        self.gripper_target = float(np.clip(msg.data, 0.0, 1.0))

    def on_set_parameters(self, params: list) -> SetParametersResult:
        """Setting `seed` (to any value, the same one too) selects the episode the next ~/reset starts."""
        for p in params:
            if p.name == "seed":
                if p.type_ != Parameter.Type.INTEGER:
                    return SetParametersResult(successful=False, reason="seed must be an integer")
                self._requested_seed = int(p.value)
        return SetParametersResult(successful=True)

    def on_reset(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        seed, self._requested_seed = self._requested_seed, None
        response.message = self.new_episode(seed)
        response.success = True
        self.get_logger().info(response.message)
        return response

    def on_subgoal_images(self, request: SubgoalImages.Request, response: SubgoalImages.Response):
        """The oracle's rollout is simulated from the current state and undone; the episode goes on unchanged."""
        try:
            if request.frames > 0 and request.every > 0:
                raise SimError(f"pass frames (K demonstration frames) or every (diagnostic), not both: {request}")
            if request.frames > 0:
                images = self.sim.demonstration_images(int(request.frames))
            else:
                images = self.sim.subgoal_images(every=int(request.every))
        except SimError as exc:
            response.success, response.message = False, str(exc)
            return response
        stamp = self.get_clock().now().to_msg()
        response.images = [rgb_to_image(im, stamp=stamp, frame_id=self.frame_id) for im in images]
        response.success, response.message = True, f"{len(images)} images, the last is the goal image"
        return response

    def tick(self) -> None:
        try:
            target = self.target if self.target is not None else self.sim.ee_position()
            self.sim.step_toward(target, self.gripper_target)
        except SimError as exc:
            self.get_logger().error(f"step failed, holding: {exc}")
            self.target = None
        stamp = self.get_clock().now().to_msg()
        state = self.sim.state()
        self.pub_image.publish(rgb_to_image(self.sim.render(), stamp=stamp, frame_id=self.frame_id))
        self.pub_pose.publish(state_to_pose_stamped(state, self.frame_id, stamp))
        self.pub_gripper.publish(Float64(data=float(state[6])))
        self.pub_distance.publish(Float64(data=self.sim.distance_to_goal()))


def main(args: list[str] | None = None) -> int:
    quiet_sigint()
    rclpy.init(args=args)
    node, code = None, 0
    try:
        node = SimNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (SimError, ParameterException) as exc:
        print(f"vjepa2_sim: invalid configuration: {exc}", file=sys.stderr, flush=True)
        code = 2
    except Exception:  # noqa: BLE001 - a tick that publishes while a signal shuts the context down
        if node is None or rclpy.ok():
            raise
    finally:
        ignore_sigint()  # the second Ctrl-C of ros2 launch must not interrupt clean-up or finalisation
        if node is not None:
            node.sim.close()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
