"""MPPI: the sampling distribution moves to the softmax-weighted mean of all samples, not to a top-k refit.

Every sample contributes with weight exp(-(E - E_min) / (temperature * std(E))): the temperature is relative to the
energies' spread within the iteration, so one `mppi_temperature` works for feature spaces of any scale. The
spread of the distribution is refitted from the same weights, with the CEM momenta (`momentum_*`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from vjepa2_core.planning.cem import CEMPlanner, PlanCancelled


class MPPIPlanner(CEMPlanner):
    """Model-predictive path integral search under the shared planning protocol (same bounds, seeds, result)."""

    def search(
        self,
        rep: torch.Tensor,
        state: torch.Tensor,
        goal: torch.Tensor,
        gen: torch.Generator,
        warm: torch.Tensor | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        cfg, device = self.config, rep.device
        self.chunk = self.rollout_chunk(cfg.samples)
        bounds = self._bounds(device)
        mean, std, _ = self._start_distribution(state, bounds, warm, device)
        alpha, beta = self._momenta(device)
        history = torch.empty(cfg.iterations, device=device)
        evaluated = done = 0
        since = time.perf_counter()
        for it in range(cfg.iterations):
            if should_stop is not None and should_stop():
                raise PlanCancelled(f"search cancelled after {it} of {cfg.iterations} iterations")
            if it > 0 and self.out_of_time(device, it, since):
                break
            cand = mean + std * self.sample_noise(cfg.samples, gen, device)
            cand[0] = mean  # the current mean is always scored
            cand = self._constrain(cand, state, bounds)
            energy = self._energy(rep, state, goal, cand)
            evaluated += cfg.samples
            history[it].copy_(energy.min())
            weights = mppi_weights(energy, cfg.mppi_temperature)[:, None, None]
            new_mean = (weights * cand).sum(0)
            new_std = (weights * (cand - new_mean).square()).sum(0).sqrt()
            mean = (1 - alpha) * new_mean + alpha * mean
            std = (1 - beta) * new_std + beta * std
            done = it + 1
        actions = self._constrain(mean[None], state, bounds)[0]
        return self.round_gripper(actions), history[:done], evaluated


def mppi_weights(energy: torch.Tensor, temperature: float) -> torch.Tensor:
    """Softmax of -energy / (temperature * std(energy)) over the samples (sums to 1; uniform if all are equal)."""
    spread = energy.std().clamp_min(1e-12)
    return torch.softmax(-(energy - energy.min()) / (temperature * spread), dim=0)
