"""Predictive sampling (Howell et al. 2022): perturb the best plan so far and keep the best; nothing to refit.

The nominal plan (zero actions with the pins, or the warm start) is scored together with `samples - 1` Gaussian
perturbations of it, at first at the action space's initial spread (the per-step bounds); the best of them becomes
the nominal. The nominal is always a candidate, so the best energy never rises from one iteration to the next. When
no perturbation beat it, the spread halves (a step-size rule, decided on the device: no host sync), so the search
ends as precise as CEM's. A baseline without tuning knobs: it reads `samples`, `iterations` and the action space.
"""

from __future__ import annotations

import torch

from vjepa2_core.planning.base import Iterations, Planner, Problem, SearchOutcome, white_noise

SHRINK = 0.5  # factor on the perturbations' spread after an iteration in which the nominal stayed the best


class PredictiveSamplingPlanner(Planner):
    """Greedy random search around the current best plan, under the shared planning protocol."""

    def run(self, problem: Problem, gen: torch.Generator, warm: torch.Tensor | None) -> SearchOutcome:
        space, device, state, bounds = problem.space, problem.device, problem.state, problem.bounds
        samples = self.config.samples
        self.chunk = self.rollout_chunk(samples)
        mean, std, _ = space.start(state, bounds, warm, device)
        nominal = space.constrain(mean[None], state, bounds)[0]
        iterations = Iterations(problem, problem.options.iterations, nominal)
        for _ in iterations:
            cand = nominal + std * white_noise(samples, space.horizon, gen, device)
            cand[0] = nominal
            cand = space.constrain(cand, state, bounds)
            energy = self._energy(problem.rep, state, problem.goal, cand, problem.options)
            low = energy.argmin()
            nominal = cand[low]
            iterations.record(energy[low], nominal, samples)
            std = torch.where(low == 0, std * SHRINK, std)  # no better plan at this spread: look closer
        return iterations.outcome(space.finish(nominal, state, bounds))
