"""Per-dimension affine maps for the AC predictor's action and state inputs.

Robot actions (~cm) and states (~m) differ in scale by orders of magnitude; fed raw, the predictor learns to
ignore the actions for a long time. Training and planning apply the same map right before the predictor, with
the statistics stored in ``model_config["conditioning"]``; without that entry the map is the identity, so older
checkpoints behave exactly as before. Everything outside the predictor (CEM, pose composition) stays physical.
The statistics are kept in float64 on the CPU (exact to save); each device/dtype they are applied on gets its own
copy once, so a rollout step on a GPU copies nothing from the host.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

DIM = 7
MIN_SCALE = 1e-6  # dimensions that never vary (unused rotation, gripper) keep scale 1


class Conditioning:
    """actions -> actions / action_scale; states -> (states - state_mean) / state_scale (identity if empty)."""

    def __init__(
        self,
        action_scale: Sequence[float] | None = None,
        state_mean: Sequence[float] | None = None,
        state_scale: Sequence[float] | None = None,
    ):
        self.action_scale = _vector(action_scale, 1.0, "action_scale")
        self.state_mean = _vector(state_mean, 0.0, "state_mean")
        self.state_scale = _vector(state_scale, 1.0, "state_scale")
        for name, v in (("action_scale", self.action_scale), ("state_scale", self.state_scale)):
            if not bool((v > 0).all()):
                raise ValueError(f"conditioning.{name} must be positive, got {v.tolist()}")
        self.identity = action_scale is None and state_mean is None and state_scale is None
        self._applied: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor, Tensor]] = {}

    @classmethod
    def from_config(cls, model_config: Mapping[str, Any] | None) -> Conditioning:
        """From a full model_config (reads its "conditioning" entry) or from the entry itself; None = identity."""
        if not model_config:
            return cls()
        cfg = model_config.get("conditioning", model_config if "action_scale" in model_config else None)
        if not cfg:
            return cls()
        unknown = set(cfg) - {"action_scale", "state_mean", "state_scale"}
        if unknown:
            raise ValueError(f"model_config['conditioning'] has unknown keys {sorted(unknown)}")
        return cls(cfg.get("action_scale"), cfg.get("state_mean"), cfg.get("state_scale"))

    @classmethod
    def fit(cls, actions: Tensor, states: Tensor) -> Conditioning:
        """Statistics of actions [N,7] and states [M,7]: std for scales (floored to 1), mean for states."""
        actions, states = actions.reshape(-1, DIM).double(), states.reshape(-1, DIM).double()
        if len(actions) < 2 or len(states) < 2:
            raise ValueError("conditioning statistics need at least 2 actions and 2 states")

        def scale(x: Tensor) -> list[float]:
            std = x.std(dim=0)
            return torch.where(std > MIN_SCALE, std, torch.ones_like(std)).tolist()

        return cls(scale(actions), states.mean(dim=0).tolist(), scale(states))

    def to_config(self) -> dict[str, list[float]] | None:
        """The JSON-able entry for model_config["conditioning"] (None for the identity)."""
        if self.identity:
            return None
        return {
            "action_scale": self.action_scale.tolist(),
            "state_mean": self.state_mean.tolist(),
            "state_scale": self.state_scale.tolist(),
        }

    def constants(
        self, device: torch.device | str, dtype: torch.dtype = torch.float32
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(action_scale, state_mean, state_scale) on `device` in `dtype`, copied there on the first call only (a
        world model asks once for its device; later calls with the same device and dtype copy nothing)."""
        key = (torch.device(device), dtype)
        if key not in self._applied:
            with torch.inference_mode(False):  # usable by training (autograd) as well as by planning
                vectors = (self.action_scale, self.state_mean, self.state_scale)
                self._applied[key] = tuple(v.to(key[0], dtype) for v in vectors)
        return self._applied[key]

    def actions(self, x: Tensor) -> Tensor:
        if self.identity:
            return x
        return x / self.constants(x.device, x.dtype)[0]

    def states(self, x: Tensor) -> Tensor:
        if self.identity:
            return x
        _, mean, scale = self.constants(x.device, x.dtype)
        return (x - mean) / scale

    def __repr__(self) -> str:
        return "Conditioning(identity)" if self.identity else f"Conditioning({self.to_config()})"


def _vector(values: Sequence[float] | None, default: float, name: str) -> Tensor:
    if values is None:
        return torch.full((DIM,), default, dtype=torch.float64)
    v = torch.as_tensor(list(values), dtype=torch.float64)
    if v.shape != (DIM,) or not bool(torch.isfinite(v).all()):
        raise ValueError(f"conditioning.{name} must be {DIM} finite numbers, got {list(values)}")
    return v
