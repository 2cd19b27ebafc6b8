"""LeRobotDataset (v3.0, v2.1) reading and writing: the DROID port and robot-learning teams' own recordings.

`reader` (header + one episode at a time), `mapping` (`data.lerobot` keys -> our 7-D state), `datasets` (the DROID
clip dataset and the pretraining video dataset over LeRobot episodes), `writer` and `export` (LeRobot v3.0 out),
`cli` (`dump`, `export`). Importing this package alone imports neither pyarrow nor PyAV.
"""
