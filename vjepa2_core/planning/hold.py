"""The hold rule: execute a plan only if the world model predicts it ends closer to the goal than standing still.

Near the goal every candidate move overshoots, yet CEM always returns its best move, so a planner without this
rule drifts around the goal (issue 8: 70% of probe episodes came within 3 cm, half of them then left it). The
comparison uses the same rollout and energy as the search, so the rule costs one extra one-sample rollout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vjepa2_core.planning.cem import CEMConfig, PlanResult
from vjepa2_core.planning.energies import trajectory_energy


@dataclass(frozen=True)
class HoldDecision:
    hold: bool
    plan_energy: float
    still_energy: float


def standing_still_energy(
    world_model, rep: torch.Tensor, state: torch.Tensor, goal_rep: torch.Tensor, cem: CEMConfig
) -> float:
    """Predicted goal energy of `cem.horizon` zero actions from the current representation and state."""
    zeros = torch.zeros(1, cem.horizon, 7)
    pred, _ = world_model.rollout(rep, state, zeros, cached=cem.cached)
    return float(trajectory_energy(pred, goal_rep, cem.energy, cem.energy_frames)[0])


def decide_hold(
    world_model,
    rep: torch.Tensor,
    state: torch.Tensor,
    goal_rep: torch.Tensor,
    plan: PlanResult,
    cem: CEMConfig,
    margin: float = 0.0,
) -> HoldDecision:
    """Hold (send a zero action) unless the plan's energy beats standing still by more than `margin`."""
    still = standing_still_energy(world_model, rep, state, goal_rep, cem)
    return HoldDecision(hold=plan.energy >= still - margin, plan_energy=float(plan.energy), still_energy=still)
