"""Start vjepa2_planner on a robot: `ros2 launch vjepa2_ros planner.launch.py params_file:=my.yaml`."""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = {
    "params_file": (
        PathJoinSubstitution([FindPackageShare("vjepa2_ros"), "config", "planner.yaml"]),
        "planner parameters (model checkpoint, CEM budget, topics, safety limits)",
    ),
    "camera_topic": ("camera/image_raw", "camera topic (Image, or CompressedImage with camera_transport: compressed)"),
    "ee_pose_topic": ("ee_pose", "end-effector pose topic (geometry_msgs/PoseStamped)"),
    "gripper_topic": ("gripper", "gripper closedness topic (std_msgs/Float64, 0..1)"),
    "device": ("cpu", "torch device for the model: cpu, cuda, cuda:0, ..."),
    "namespace": ("", "namespace of the planner node"),
    "autostart": ("true", "configure and activate at once; false: drive the lifecycle (change_state service)"),
}


def generate_launch_description() -> LaunchDescription:
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=doc)
        for name, (default, doc) in ARGUMENTS.items()
    ]
    planner = Node(
        package="vjepa2_ros",
        executable="vjepa2_planner",
        name="vjepa2_planner",
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            LaunchConfiguration("params_file"),
            {"model.device": LaunchConfiguration("device"), "autostart": LaunchConfiguration("autostart")},
        ],
        # The node's default topic parameters are these relative names, so remapping them moves its inputs.
        remappings=[
            ("camera/image_raw", LaunchConfiguration("camera_topic")),
            ("ee_pose", LaunchConfiguration("ee_pose_topic")),
            ("gripper", LaunchConfiguration("gripper_topic")),
        ],
        output="screen",
        emulate_tty=True,
    )
    return LaunchDescription([*declared, planner])
