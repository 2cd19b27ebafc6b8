"""rosbag2 tools: offline replay of the world model and planner, bag -> DROID conversion, and bag playback."""
