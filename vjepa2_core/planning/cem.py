"""Cross-entropy-method planning over end-effector delta actions, batched over samples on the model's device.

The default `CEMConfig` reproduces the reference V-JEPA 2-AC planner (Gaussian over xyz + gripper, zero rotation
deltas, per-coordinate clipping, top-k refit with separate momenta, gripper rounding, L1 energy on the last predicted
frame). Extensions are opt-in: warm start from the shifted previous plan, elite reuse and a shrinking population
(`elite_reuse`, `population_decay`), rotation deltas, L2 / cosine energies, energy over every predicted frame and a
workspace box. `cem_search` is the loop; iCEM and cem_grad run it with their own options and noise.

Besides the planner, this module re-exports the names that callers have always imported from it (the config,
`PlanResult`, `PlanCancelled`, `shift_plan`, the action constants); their homes are `config.py`, `base.py` and
`action_space.py`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from vjepa2_core.planning.action_space import (  # noqa: F401  (re-exported)
    ACTION_DIM,
    AXIS_NAMES,
    GRIPPER,
    REFERENCE_AXIS_INDEX,
    axis_index,
)
from vjepa2_core.planning.base import (  # noqa: F401  (PlanCancelled, PlanResult, RolloutModel, shift_plan re-exported)
    Iterations,
    PlanCancelled,
    Planner,
    PlanResult,
    Problem,
    RolloutModel,
    SearchOutcome,
    shift_plan,
    white_noise,
)
from vjepa2_core.planning.config import CEMConfig, CEMOptions, config_to_dict  # noqa: F401  (re-exported)

Noise = Callable[[int], torch.Tensor]  # n -> standard noise [n, horizon, 7] (unit variance per coordinate)


def cem_search(
    planner: Planner,
    problem: Problem,
    gen: torch.Generator,
    warm: torch.Tensor | None,
    options: CEMOptions,
    noise: Noise | None = None,
) -> SearchOutcome:
    """The CEM loop: sample around the mean, keep the top-k (and elites of the last iteration), refit with momenta.

    `noise` defaults to white noise from `gen`. The plan is the final mean (iCEM's `return_best`: the best sample),
    constrained and gripper-rounded; `SearchOutcome.best` is the best sample seen, for refining searches.
    """
    device, space, state, bounds = problem.device, problem.space, problem.state, problem.bounds
    if noise is None:

        def noise(n: int) -> torch.Tensor:
            return white_noise(n, space.horizon, gen, device)

    planner.chunk = planner.rollout_chunk(options.population(0))
    mean, std, warm = space.start(state, bounds, warm, device)
    alpha, beta = options.momenta.tensors(device)
    iterations = Iterations(problem, problem.options.iterations, mean.clone())
    elites = elite_energy = None
    for it in iterations:
        n = options.population(it)
        cand = mean + std * noise(n)
        if it == 0 and warm is not None:
            cand[0] = warm
        if options.score_mean_last and it == iterations.total - 1:
            cand[-1] = mean
        cand = space.constrain(cand, state, bounds)
        energy = planner._energy(problem.rep, state, problem.goal, cand, problem.options)
        if elites is not None:
            cand, energy = torch.cat([elites, cand]), torch.cat([elite_energy, energy])
        top = energy.topk(options.topk, largest=False)
        selected = cand[top.indices]
        iterations.record(top.values[0], selected[0], n)
        mean = (1 - alpha) * selected.mean(0) + alpha * mean
        std = (1 - beta) * selected.std(0) + beta * std
        if keep := options.elites_kept():
            elites, elite_energy = selected[:keep], top.values[:keep]
    return iterations.outcome(space.finish(iterations.best if options.return_best else mean, state, bounds))


class CEMPlanner(Planner):
    """The reference cross-entropy method (see the module docstring)."""

    def run(self, problem: Problem, gen: torch.Generator, warm: torch.Tensor | None) -> SearchOutcome:
        return cem_search(self, problem, gen, warm, self.config.cem_options("cem"))
