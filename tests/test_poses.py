"""Pose math against the reference fixture and scipy (the convention the DROID labels and the planner use)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from vjepa2_core.planning.poses import compose_pose, euler_to_matrix, matrix_to_euler, pose_diff


def _random_poses(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(n, 3, generator=g, dtype=torch.float64)
    euler = (torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1) * torch.tensor(
        [math.pi, math.pi / 2, math.pi]
    )
    grip = torch.rand(n, 1, generator=g, dtype=torch.float64)
    return torch.cat([xyz, euler, grip], dim=-1)


def _scipy_compose(pose: np.ndarray, action: np.ndarray) -> np.ndarray:
    rot = Rotation.from_euler("xyz", action[:, 3:6]) * Rotation.from_euler("xyz", pose[:, 3:6])
    grip = np.clip(pose[:, 6:] + action[:, 6:], 0.0, 1.0)
    return np.concatenate([pose[:, :3] + action[:, :3], rot.as_euler("xyz"), grip], axis=1)


def _scipy_diff(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    rot = Rotation.from_euler("xyz", end[:, 3:6]) * Rotation.from_euler("xyz", start[:, 3:6]).inv()
    return np.concatenate([end[:, :3] - start[:, :3], rot.as_euler("xyz"), end[:, 6:] - start[:, 6:]], axis=1)


def _angle_err(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle difference modulo 2*pi (so -pi and pi compare equal)."""
    return torch.remainder(a - b + math.pi, 2 * math.pi) - math.pi


def test_fixture_compose_and_diff(fixtures_dir):
    ref = torch.load(fixtures_dir / "pose_math.pt", weights_only=True)
    torch.testing.assert_close(compose_pose(ref["poses"], ref["actions"]), ref["new_poses"], atol=1e-4, rtol=0)
    torch.testing.assert_close(pose_diff(ref["poses"], ref["next_poses"]), ref["pose_diffs"], atol=1e-4, rtol=0)


def test_fixture_float32_batched(fixtures_dir):
    ref = torch.load(fixtures_dir / "pose_math.pt", weights_only=True)
    poses, actions = ref["poses"].float().view(4, 4, 7), ref["actions"].float().view(4, 4, 7)
    out = compose_pose(poses, actions)
    assert out.dtype == torch.float32 and out.shape == (4, 4, 7)
    torch.testing.assert_close(out.view(16, 7).double(), ref["new_poses"], atol=1e-4, rtol=0)


def test_against_scipy_random():
    poses, targets = _random_poses(500, 0), _random_poses(500, 1)
    actions = (targets - poses) * 0.3
    expected = torch.from_numpy(_scipy_compose(poses.numpy(), actions.numpy()))
    got = compose_pose(poses, actions)
    torch.testing.assert_close(got[:, :3], expected[:, :3], atol=1e-9, rtol=0)
    assert _angle_err(got[:, 3:6], expected[:, 3:6]).abs().max() < 1e-9
    torch.testing.assert_close(got[:, 6], expected[:, 6], atol=1e-12, rtol=0)
    assert got[:, 6].min() >= 0 and got[:, 6].max() <= 1

    expected = torch.from_numpy(_scipy_diff(poses.numpy(), targets.numpy()))
    got = pose_diff(poses, targets)
    assert _angle_err(got, expected).abs().max() < 1e-9


def test_round_trip_compose_of_diff():
    p, q = _random_poses(300, 2), _random_poses(300, 3)
    back = compose_pose(p, pose_diff(p, q))
    torch.testing.assert_close(back[:, :3], q[:, :3], atol=1e-12, rtol=0)
    torch.testing.assert_close(euler_to_matrix(back[:, 3:6]), euler_to_matrix(q[:, 3:6]), atol=1e-9, rtol=0)
    torch.testing.assert_close(back[:, 6], q[:, 6], atol=1e-12, rtol=0)


def test_matrix_round_trip_matches_scipy_branch():
    euler = _random_poses(400, 4)[:, 3:6]
    mats = euler_to_matrix(euler)
    torch.testing.assert_close(mats, torch.from_numpy(Rotation.from_euler("xyz", euler.numpy()).as_matrix()))
    back = matrix_to_euler(mats)
    scipy_back = torch.from_numpy(Rotation.from_matrix(mats.numpy()).as_euler("xyz"))
    assert _angle_err(back, scipy_back).abs().max() < 1e-9
    assert back[:, 1].abs().max() <= math.pi / 2 + 1e-12


@pytest.mark.parametrize("pitch", [math.pi / 2, -math.pi / 2])
def test_gimbal_lock_follows_scipy(pitch):
    euler = torch.tensor([[0.7, pitch, -0.4], [-2.0, pitch, 1.1]], dtype=torch.float64)
    mats = euler_to_matrix(euler)
    with pytest.warns(UserWarning):
        expected = Rotation.from_matrix(mats.numpy()).as_euler("xyz")
    got = matrix_to_euler(mats)
    assert _angle_err(got, torch.from_numpy(expected)).abs().max() < 1e-6
    assert (got[:, 2] == 0).all()
    torch.testing.assert_close(euler_to_matrix(got), mats, atol=1e-9, rtol=0)


def test_near_gimbal_lock_float32_keeps_rotation():
    """Slightly off the lock, float32 angles must still describe the same rotation."""
    euler = torch.tensor([[0.3, math.pi / 2 - 1e-4, 1.2], [-1.0, -math.pi / 2 + 3e-5, 2.5]], dtype=torch.float32)
    mats = euler_to_matrix(euler)
    torch.testing.assert_close(euler_to_matrix(matrix_to_euler(mats)), mats, atol=2e-5, rtol=0)


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match=r"\[\.\.\., 7\]"):
        compose_pose(torch.zeros(3, 6), torch.zeros(3, 7))
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, 3\]"):
        matrix_to_euler(torch.zeros(4, 3))
    with pytest.raises(TypeError):
        pose_diff([0.0] * 7, torch.zeros(7))
