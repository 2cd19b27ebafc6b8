"""Planning energies: distance between predicted and goal representations, batched over samples.

Every energy maps predictions [S, ..., N, D] and a goal [N, D] (or anything broadcastable) to one number per sample,
so CEM can rank thousands of candidates with one call and no host round-trip.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Energy = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def l1_energy(pred: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over tokens and features (the reference objective)."""
    return (pred - goal).abs().flatten(-2).mean(-1)


def l2_energy(pred: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """Mean squared difference over tokens and features (penalises a few large errors more than L1)."""
    return (pred - goal).square().flatten(-2).mean(-1)


def cosine_energy(pred: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """1 - mean per-token cosine similarity (insensitive to the scale of the representations)."""
    return 1.0 - F.cosine_similarity(pred, goal.expand_as(pred), dim=-1, eps=1e-8).mean(-1)


ENERGIES: dict[str, Energy] = {"l1": l1_energy, "l2": l2_energy, "cosine": cosine_energy}
FRAME_MODES = ("last", "all")


def get_energy(name: str) -> Energy:
    """Look up an energy by name with a clear error for typos."""
    try:
        return ENERGIES[name]
    except KeyError:
        raise ValueError(f"unknown energy {name!r}; choose one of {sorted(ENERGIES)}") from None


def trajectory_energy(pred_reps: torch.Tensor, goal_rep: torch.Tensor, energy: str = "l1", frames: str = "last"):
    """Energy of predicted trajectories [S, H, N, D] against a goal [N, D] -> [S].

    frames="last" scores the final predicted frame (reference); "all" averages the energy over every predicted
    frame, which rewards getting close early and smooths the landscape for long horizons.
    """
    if pred_reps.ndim != 4:
        raise ValueError(f"expected predicted reps [S,H,N,D], got {tuple(pred_reps.shape)}")
    goal = goal_rep.reshape(pred_reps.shape[-2:]) if goal_rep.numel() == pred_reps[0, 0].numel() else None
    if goal is None:
        raise ValueError(
            f"goal rep {tuple(goal_rep.shape)} does not match predicted frames {tuple(pred_reps.shape[-2:])}"
        )
    fn = get_energy(energy)
    if frames == "last":
        return fn(pred_reps[:, -1], goal)
    if frames == "all":
        return fn(pred_reps, goal).mean(-1)
    raise ValueError(f"unknown frames mode {frames!r}; choose one of {FRAME_MODES}")
