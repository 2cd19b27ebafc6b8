"""End-effector pose arithmetic for V-JEPA 2-AC states and actions, batched in torch.

A pose is ``[x, y, z, a, b, c, gripper]`` with (a, b, c) Euler angles in the scipy ``'xyz'`` (lower-case, extrinsic)
convention, ``R = Rz(c) @ Ry(b) @ Rx(a)``. An action is the per-step delta between two poses: translation difference,
the rotation ``R_end @ R_start^T`` as Euler angles, and the gripper difference. The rotation math goes through unit
quaternions so that Euler angles near gimbal lock stay well conditioned, and the branch choice (middle angle in
[-pi/2, pi/2], third angle zero at gimbal lock, every angle wrapped to [-pi, pi)) matches scipy, which the reference
pipelines use. Everything is vectorised over leading dims and runs on any device; half precision is computed in
float32.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "compose_pose",
    "pose_diff",
    "euler_to_matrix",
    "matrix_to_euler",
    "euler_to_quat",
    "quat_to_euler",
    "matrix_to_quat",
    "quat_multiply",
]


def _check_last_dim(name: str, x: torch.Tensor, size: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 0 or x.shape[-1] != size:
        raise ValueError(f"{name} must have shape [..., {size}], got {tuple(x.shape)}")


def _working_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64, everything else is computed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _components(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Split the last dim into contiguous tensors (elementwise ops on strided views are several times slower)."""
    return x.movedim(-1, 0).contiguous().unbind(0)


def _wrap(angle: torch.Tensor) -> torch.Tensor:
    """Wrap to [-pi, pi) like scipy."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def quat_multiply(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``p * q`` of scalar-last quaternions ``[x, y, z, w]`` (rotation ``q`` first, then ``p``)."""
    pv, pw = p[..., :3], p[..., 3:]
    qv, qw = q[..., :3], q[..., 3:]
    vec = pw * qv + qw * pv + torch.linalg.cross(pv, qv, dim=-1)
    w = pw * qw - (pv * qv).sum(-1, keepdim=True)
    return torch.cat([vec, w], dim=-1)


def _quat_conj(q: torch.Tensor) -> torch.Tensor:
    return torch.cat([-q[..., :3], q[..., 3:]], dim=-1)


def euler_to_quat(euler: torch.Tensor) -> torch.Tensor:
    """Extrinsic 'xyz' Euler angles [..., 3] -> unit quaternion [..., 4] (scalar last)."""
    _check_last_dim("euler", euler, 3)
    half = torch.stack(_components(euler.to(_working_dtype(euler)))) / 2
    ca, cb, cc = torch.cos(half).unbind(0)
    sa, sb, sc = torch.sin(half).unbind(0)
    # qz(c) * qy(b) * qx(a), expanded
    x = cc * cb * sa - sc * sb * ca
    y = cc * sb * ca + sc * cb * sa
    z = sc * cb * ca - cc * sb * sa
    w = cc * cb * ca + sc * sb * sa
    return torch.stack([x, y, z, w], dim=-1)


def quat_to_euler(quat: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """Unit quaternion [..., 4] (scalar last) -> extrinsic 'xyz' Euler angles [..., 3] on scipy's branch.

    The middle angle comes from an atan2 of two norms and the outer angles from their half sum and half difference,
    which stay accurate near gimbal lock. Within ``eps`` of the lock the third angle is set to zero.
    """
    _check_last_dim("quat", quat, 4)
    q = quat.to(_working_dtype(quat))
    if eps is None:
        eps = 1e-7 if q.dtype == torch.float64 else 1e-6
    x, y, z, w = _components(q)
    # Permuted components for the (x, y, z) axis sequence (Bernardes & Viollet 2022, as in scipy).
    a, b, c, d = w - y, x + z, y + w, z - x
    half_sum = torch.atan2(b, a)
    half_diff = torch.atan2(d, c)
    middle = 2 * torch.atan2(torch.hypot(c, d), torch.hypot(a, b))
    near_zero = middle.abs() <= eps
    near_pi = (middle - math.pi).abs() <= eps
    locked = near_zero | near_pi
    first = torch.where(locked, torch.where(near_zero, 2 * half_sum, -2 * half_diff), half_sum - half_diff)
    third = torch.where(locked, torch.zeros_like(middle), half_sum + half_diff)
    return _wrap(torch.stack([first, middle - math.pi / 2, third], dim=-1))


def matrix_to_quat(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrix [..., 3, 3] -> unit quaternion [..., 4], using the best-conditioned of four formulas."""
    if not isinstance(matrix, torch.Tensor) or matrix.ndim < 2 or matrix.shape[-2:] != (3, 3):
        raise ValueError(f"matrix must have shape [..., 3, 3], got {tuple(getattr(matrix, 'shape', ()))}")
    m = matrix.to(_working_dtype(matrix))
    r = [[m[..., i, j] for j in range(3)] for i in range(3)]
    trace = r[0][0] + r[1][1] + r[2][2]
    candidates = []
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        comp = [None] * 4
        comp[i] = 1 - trace + 2 * r[i][i]
        comp[j] = r[j][i] + r[i][j]
        comp[k] = r[k][i] + r[i][k]
        comp[3] = r[k][j] - r[j][k]
        candidates.append(torch.stack(comp, dim=-1))
    candidates.append(torch.stack([r[2][1] - r[1][2], r[0][2] - r[2][0], r[1][0] - r[0][1], 1 + trace], dim=-1))
    candidates = torch.stack(candidates, dim=-2)  # [..., 4 formulas, 4]
    choice = torch.stack([r[0][0], r[1][1], r[2][2], trace], dim=-1).argmax(-1)
    quat = torch.gather(candidates, -2, choice[..., None, None].expand(*choice.shape, 1, 4)).squeeze(-2)
    return quat / quat.norm(dim=-1, keepdim=True)


def _quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    x, y, z, w = q.unbind(-1)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def euler_to_matrix(euler: torch.Tensor) -> torch.Tensor:
    """Extrinsic 'xyz' Euler angles [..., 3] -> rotation matrix [..., 3, 3] (= Rz(c) Ry(b) Rx(a))."""
    return _quat_to_matrix(euler_to_quat(euler)).to(_out_dtype(euler))


def matrix_to_euler(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrix [..., 3, 3] -> extrinsic 'xyz' Euler angles [..., 3] on scipy's branch."""
    return quat_to_euler(matrix_to_quat(matrix)).to(_out_dtype(matrix))


def _out_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


def compose_pose(pose: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Apply a delta action to a pose (both [..., 7], broadcastable): the planner's forward model of the robot.

    xyz adds, the rotation delta is left-multiplied (``R_new = R(d_euler) @ R(pose)``), gripper adds and is clipped
    to [0, 1].
    """
    _check_last_dim("pose", pose, 7)
    _check_last_dim("action", action, 7)
    out_dtype = torch.promote_types(_out_dtype(pose), _out_dtype(action))
    work = torch.promote_types(_working_dtype(pose), _working_dtype(action))
    pose, action = pose.to(work), action.to(work)
    xyz = pose[..., :3] + action[..., :3]
    quat = quat_multiply(euler_to_quat(action[..., 3:6]), euler_to_quat(pose[..., 3:6]))
    gripper = (pose[..., 6:] + action[..., 6:]).clamp(0.0, 1.0)
    return torch.cat([xyz, quat_to_euler(quat), gripper], dim=-1).to(out_dtype)


def pose_diff(start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """The action [..., 7] that takes ``start`` to ``end``, as used to label DROID transitions.

    dxyz = end - start, rotation ``R_end @ R_start^T`` as Euler angles, dgripper = end - start (not clipped).
    """
    _check_last_dim("start", start, 7)
    _check_last_dim("end", end, 7)
    out_dtype = torch.promote_types(_out_dtype(start), _out_dtype(end))
    work = torch.promote_types(_working_dtype(start), _working_dtype(end))
    start, end = start.to(work), end.to(work)
    quat = quat_multiply(euler_to_quat(end[..., 3:6]), _quat_conj(euler_to_quat(start[..., 3:6])))
    delta = torch.cat([end[..., :3] - start[..., :3], quat_to_euler(quat), end[..., 6:] - start[..., 6:]], dim=-1)
    return delta.to(out_dtype)
