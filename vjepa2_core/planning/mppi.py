"""MPPI: the sampling distribution moves to the softmax-weighted mean of all samples, not to a top-k refit.

Every sample contributes with weight exp(-(E - E_min) / (temperature * std(E))): the temperature is relative to the
energies' spread within the iteration, so one `mppi_temperature` works for feature spaces of any scale. The
spread of the distribution is refitted from the same weights, with the CEM momenta (`momentum_*`).
"""

from __future__ import annotations

import torch

from vjepa2_core.planning.base import Iterations, Planner, Problem, SearchOutcome, white_noise


class MPPIPlanner(Planner):
    """Model-predictive path integral search under the shared planning protocol (same bounds, seeds, result)."""

    def run(self, problem: Problem, gen: torch.Generator, warm: torch.Tensor | None) -> SearchOutcome:
        opts, device, space = self.config.mppi_options(), problem.device, problem.space
        state, bounds = problem.state, problem.bounds
        self.chunk = self.rollout_chunk(opts.samples)
        mean, std, _ = space.start(state, bounds, warm, device)
        alpha, beta = opts.momenta.tensors(device)
        iterations = Iterations(problem, problem.options.iterations, mean)
        for _ in iterations:
            cand = mean + std * white_noise(opts.samples, space.horizon, gen, device)
            cand[0] = mean  # the current mean is always scored
            cand = space.constrain(cand, state, bounds)
            energy = self._energy(problem.rep, state, problem.goal, cand, problem.options)
            iterations.record(energy.min(), None, opts.samples)
            weights = mppi_weights(energy, opts.temperature)[:, None, None]
            new_mean = (weights * cand).sum(0)
            new_std = (weights * (cand - new_mean).square()).sum(0).sqrt()
            mean = (1 - alpha) * new_mean + alpha * mean
            std = (1 - beta) * new_std + beta * std
        return iterations.outcome(space.finish(mean, state, bounds))


def mppi_weights(energy: torch.Tensor, temperature: float) -> torch.Tensor:
    """Softmax of -energy / (temperature * std(energy)) over the samples (sums to 1; uniform if all are equal)."""
    spread = energy.std().clamp_min(1e-12)
    return torch.softmax(-(energy - energy.min()) / (temperature * spread), dim=0)
