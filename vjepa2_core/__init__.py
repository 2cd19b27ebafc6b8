"""Pure-PyTorch V-JEPA 2 core: models, checkpoint loading, data, training and planning. Imports nothing from ROS."""

__version__ = "0.1.0"
