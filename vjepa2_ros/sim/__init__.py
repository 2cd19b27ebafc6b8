"""Simulated Fetch arm (MuJoCo via gymnasium-robotics): environment, ROS 2 node, data collection, evaluation."""
