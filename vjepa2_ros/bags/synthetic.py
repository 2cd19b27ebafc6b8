"""Generated robot trajectories with known actions (for tests, the replay benchmark and demos without a robot).

The camera image draws the end effector as a disc whose position and size follow x, y, z and whose colour
follows the gripper, so frames really change with the state.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from vjepa2_core.planning.poses import compose_pose


def random_actions(steps: int, seed: int = 0, max_step: float = 0.03, gripper_at: int | None = None) -> np.ndarray:
    """Smooth xyz deltas (|component| <= max_step), no rotation; optionally one gripper close (+1) at `gripper_at`."""
    rng = np.random.default_rng(seed)
    knots = rng.uniform(-max_step, max_step, size=(steps // 4 + 2, 3))
    t = np.linspace(0, len(knots) - 1, steps)
    xyz = np.stack([np.interp(t, np.arange(len(knots)), knots[:, i]) for i in range(3)], axis=1)
    actions = np.zeros((steps, 7))
    actions[:, :3] = xyz
    if gripper_at is not None:
        actions[gripper_at, 6] = 1.0
    return actions


def rollout_states(start: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """States [T+1,7] visited by applying `actions` [T,7] from `start` with the planner's pose model."""
    states = [torch.as_tensor(start, dtype=torch.float64)]
    for a in torch.as_tensor(actions, dtype=torch.float64):
        states.append(compose_pose(states[-1], a))
    return torch.stack(states).numpy()


def render(state: np.ndarray, size: int = 64) -> np.ndarray:
    """RGB uint8 [size,size,3]: a disc at (x, y) in the image, radius growing with z, red (open) to blue (closed)."""
    img = np.full((size, size, 3), 235, dtype=np.uint8)
    cv2.rectangle(img, (0, size * 3 // 4), (size - 1, size - 1), (120, 100, 80), -1)  # a table edge for context
    cx = int(np.clip((state[1] + 0.3) / 0.6, 0, 1) * (size - 1))
    cy = int(np.clip((0.8 - state[0]) / 0.6, 0, 1) * (size - 1))
    radius = max(2, int(size * (0.05 + 0.15 * np.clip(state[2] / 0.6, 0, 1))))
    g = float(np.clip(state[6], 0, 1))
    cv2.circle(img, (cx, cy), radius, (int(255 * (1 - g)), 40, int(255 * g)), -1)
    return img


def synthetic_trajectory(
    steps: int = 20, seed: int = 0, size: int = 64, gripper_at: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames uint8 [T+1,H,W,3], states [T+1,7], actions [T,7]) with states = actions applied from a start pose."""
    start = np.array([0.5, 0.0, 0.3, 3.0, 0.1, -0.2, 0.0])  # a Franka-like downward-facing gripper
    actions = random_actions(steps, seed, gripper_at=gripper_at)
    states = rollout_states(start, actions)
    frames = np.stack([render(s, size) for s in states])
    return frames, states, actions
