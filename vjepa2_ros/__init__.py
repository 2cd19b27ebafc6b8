"""Thin rclpy nodes and message conversions around vjepa2_core."""
