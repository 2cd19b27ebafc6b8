"""The space every planner searches: 7-D end-effector delta actions, their bounds, pins and first distribution.

A plan is `horizon` actions [dx, dy, dz, droll, dpitch, dyaw, dgripper]. The reference planner moves xyz and the
gripper only (rotation deltas stay zero unless `rotation`), clips each coordinate to its bound, and rounds small
gripper commands to zero. `constrain` is the one projection of candidate plans onto what may be executed (per-step
bounds, pinned axes, a gripper closed from a given step on, a workspace box that the positions never leave), so a
sampler, a gradient step and a warm start all end up inside the same set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

ACTION_DIM = 7
GRIPPER = 6
AXIS_NAMES = {"x": 0, "y": 1, "z": 2, "roll": 3, "pitch": 4, "yaw": 5, "gripper": 6}
# The reference planner samples 4 dims [x, y, z, gripper]; its integer `axis` keys index that vector.
REFERENCE_AXIS_INDEX = {0: 0, 1: 1, 2: 2, 3: GRIPPER, -1: GRIPPER}
Box = tuple[tuple[float, float, float], tuple[float, float, float]]


def axis_index(key: int | str) -> int:
    """Map an `axis` key (reference 4-D index 0-3/-1, or a name such as 'z' or 'gripper') to the 7-D action index."""
    if _is_axis(key):
        return AXIS_NAMES[key] if isinstance(key, str) else REFERENCE_AXIS_INDEX[key]
    raise ValueError(f"invalid axis key {key!r}: use 0,1,2 (xyz), 3/-1 (gripper) or one of {list(AXIS_NAMES)}")


class Bounds(NamedTuple):
    """Per-step action bounds [7] and, with a workspace, its corners [3]; made on the device once per search."""

    low: torch.Tensor
    high: torch.Tensor
    box: tuple[torch.Tensor, torch.Tensor] | None = None


@dataclass(frozen=True)
class ActionSpace:
    """Bounds, pins and the initial sampling distribution of `horizon`-step plans (see the module docstring)."""

    horizon: int
    maxnorm: float = 0.05  # per-axis bound of an xyz step (metres)
    rotation: bool = False  # also plan rotation deltas (else they stay zero)
    rot_maxnorm: float = 0.1  # per-axis bound of a rotation step (radians)
    gripper_max: float = 0.75  # bound of a gripper change
    gripper_init_std: float = 1.0  # initial std of gripper changes
    gripper_round: float = 0.25  # planned gripper changes below this magnitude become 0
    axis: Mapping[int | str, float] = field(default_factory=dict)  # pinned axes: key (axis_index) -> value
    close_gripper: int | None = None  # from this step on the gripper is commanded closed (1.0)
    workspace: Box | None = None  # ((xmin, ymin, zmin), (xmax, ymax, zmax)) the positions stay in

    def checks(self) -> list[tuple[bool, str]]:
        """(ok, message) pairs of the range checks; `validate` raises for the first failing one."""
        box_ok = self.workspace is None or (
            len(self.workspace) == 2
            and all(len(corner) == 3 for corner in self.workspace)
            and all(a <= b for a, b in zip(*self.workspace))
        )
        return [
            (self.horizon >= 1, "horizon must be >= 1"),
            (self.maxnorm > 0 and self.rot_maxnorm > 0 and self.gripper_max >= 0, "bounds must be positive"),
            (self.close_gripper is None or self.close_gripper >= 0, "close_gripper must be None or >= 0"),
            (
                all(_is_axis(key) for key in self.axis),
                f"invalid axis key in {dict(self.axis)}: use 0,1,2 (xyz), "
                f"3/-1 (gripper) or one of {list(AXIS_NAMES)}",
            ),
            (box_ok, f"workspace must be ((xmin,ymin,zmin),(xmax,ymax,zmax)), got {self.workspace}"),
        ]

    def validate(self) -> None:
        for ok, msg in self.checks():
            if not ok:
                raise ValueError(f"invalid action space: {msg}")

    def bounds(self, device: torch.device) -> Bounds:
        rot = self.rot_maxnorm if self.rotation else 0.0
        high = filled(device, [self.maxnorm] * 3 + [rot] * 3 + [self.gripper_max])
        if self.workspace is None:
            return Bounds(-high, high)
        return Bounds(-high, high, (filled(device, self.workspace[0]), filled(device, self.workspace[1])))

    def constrain(self, actions: torch.Tensor, state: torch.Tensor, bounds: Bounds) -> torch.Tensor:
        """Plans [B,H,7] clipped to the per-step bounds, with the pins and `close_gripper` applied and the positions
        (from `state` [1,7]) kept in the workspace; a new tensor."""
        actions = torch.maximum(torch.minimum(actions, bounds.high), bounds.low)
        for key, value in self.axis.items():
            actions[..., axis_index(key)].fill_(value)
        if self.close_gripper is not None:
            actions[..., self.close_gripper :, GRIPPER].fill_(1.0)
        if bounds.box is None:
            return actions
        lo, hi = bounds.box
        pos = state[..., :3].expand(actions.shape[0], 3)
        steps = []
        for h in range(actions.shape[1]):
            target = torch.maximum(torch.minimum(pos + actions[:, h, :3], hi), lo)
            step = (target - pos).clamp(-self.maxnorm, self.maxnorm)
            steps.append(step)
            pos = pos + step
        return torch.cat([torch.stack(steps, dim=1), actions[..., 3:]], dim=-1)

    def initial_distribution(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) [H,7] of the first samples: zero mean (pinned axes at their value), std at the bounds."""
        mean = torch.zeros(self.horizon, ACTION_DIM, device=device)
        std = torch.zeros(self.horizon, ACTION_DIM, device=device)
        std[:, :3].fill_(self.maxnorm)
        if self.rotation:
            std[:, 3:6].fill_(self.rot_maxnorm)
        std[:, GRIPPER].fill_(self.gripper_init_std)
        for key, value in self.axis.items():
            mean[:, axis_index(key)].fill_(value)
        return mean, std

    def start(
        self, state: torch.Tensor, bounds: Bounds, warm: torch.Tensor | None, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(mean, std, warm): the initial distribution centred on the warm start (constrained) when there is one."""
        mean, std = self.initial_distribution(device)
        if warm is not None:
            warm = self.constrain(warm[None], state, bounds)[0]
            mean = warm.clone()
        return mean, std, warm

    def round_gripper(self, actions: torch.Tensor) -> torch.Tensor:
        """Reference rule, in place on [H,7]: gripper commands below `gripper_round` in magnitude become zero."""
        small = actions[:, GRIPPER].abs() < self.gripper_round
        actions[:, GRIPPER] = torch.where(small, 0.0, actions[:, GRIPPER])
        return actions

    def finish(self, actions: torch.Tensor, state: torch.Tensor, bounds: Bounds) -> torch.Tensor:
        """A search's answer [H,7] as executed: constrained, then gripper-rounded."""
        return self.round_gripper(self.constrain(actions[None], state, bounds)[0])


def _is_axis(key: int | str) -> bool:
    return (isinstance(key, str) and key in AXIS_NAMES) or (isinstance(key, int) and key in REFERENCE_AXIS_INDEX)


def filled(device: torch.device, values) -> torch.Tensor:
    """A small constant vector made on the device: `tensor[i] = scalar` would copy from the host (a CUDA sync)."""
    return torch.cat([torch.full((1,), float(v), device=device) for v in values])
