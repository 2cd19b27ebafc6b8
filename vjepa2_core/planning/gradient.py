"""Gradient planners: Adam on the action sequence through the differentiable predictor, projected onto the bounds.

The energy is a smooth function of the actions (the predictor is a transformer), so a few hundred samples of CEM
can be replaced by a few gradient steps on a handful of starts. After every step the actions are projected back
onto the action space (`ActionSpace.constrain`: per-step bounds, `axis` pins, `close_gripper`, the workspace box), so
the result is always executable. `cem_grad` composes the CEM search (`cem.cem_search`) with `grad_steps` such steps
from its plan and its best sample.
"""

from __future__ import annotations

import dataclasses

import torch

from vjepa2_core.planning.base import Iterations, Planner, Problem, SearchOutcome, white_noise
from vjepa2_core.planning.cem import cem_search
from vjepa2_core.planning.energies import trajectory_energy


def adam_descent(planner: Planner, problem: Problem, init: torch.Tensor, steps: int) -> SearchOutcome:
    """Projected Adam from the starts `init` [R,H,7]: the best sequence seen, the best energy per step.

    Each step scores all R starts in one batched rollout, keeps the best sequence seen so far and moves every start
    along its own gradient; the final iterates are scored once more. Adam runs on the actions divided by their
    per-dimension bounds, so `grad_lr` is a fraction of `maxnorm` (rotations: `rot_maxnorm`, gripper: `gripper_max`)
    whatever the search space, decaying as 1 / sqrt(1 + step / 10) so that no step count has to be known.
    """
    with torch.inference_mode(False):  # callers (the controller) may plan under inference mode
        # inference-mode tensors cannot be saved for backward: work on ordinary copies, bounds made here
        rep, state, goal, init = (t.clone() for t in (problem.rep, problem.state, problem.goal, init.detach()))
        bounds = problem.space.bounds(rep.device)
        problem = dataclasses.replace(problem, rep=rep, state=state, goal=goal, bounds=bounds)
        return _adam_descent(planner, problem, init, steps)


def _adam_descent(planner: Planner, problem: Problem, init: torch.Tensor, steps: int) -> SearchOutcome:
    opts, lr, wm = problem.options, planner.config.gradient_options().lr, planner.world_model
    space, state, bounds = problem.space, problem.state, problem.bounds
    scale = torch.where(bounds.high > 0, bounds.high, torch.ones_like(bounds.high))  # Adam works on actions / bound
    rollout = getattr(wm, "rollout_differentiable", wm.rollout)  # the toy's rollout is differentiable as it is
    z = (space.constrain(init, state, bounds) / scale).requires_grad_(True)
    adam = AdamState(z)
    iterations = Iterations(problem, steps + 1, (z.detach()[0] * scale).clone(), "gradient search")
    for it in iterations:
        last = it == steps
        with torch.enable_grad():
            x = z * scale
            pred, _ = rollout(problem.rep, state, x, cached=opts.cached, last_only=opts.energy_frames == "last")
            energy = trajectory_energy(pred, problem.goal, opts.energy, opts.energy_frames)
            grad = None if last else torch.autograd.grad(energy.sum(), z)[0]
        energy = energy.detach()
        low = energy.argmin()
        iterations.record(energy[low], x.detach()[low], z.shape[0])
        if last:
            break
        with torch.no_grad():
            adam.step(z, grad, lr / (1 + it / 10) ** 0.5)  # settle near the optimum, any budget
            z.copy_(space.constrain(z.detach() * scale, state, bounds) / scale)
    return iterations.outcome(iterations.best)


class AdamState:
    """Adam (beta 0.9 / 0.999, eps 1e-8) on one tensor: no `torch.optim` (its first step imports for seconds)."""

    def __init__(self, like: torch.Tensor, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.m, self.v = torch.zeros_like(like), torch.zeros_like(like)
        self.beta1, self.beta2, self.eps, self.t = beta1, beta2, eps, 0

    def step(self, param: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        self.t += 1
        self.m.lerp_(grad, 1 - self.beta1)
        self.v.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        m_hat = self.m / (1 - self.beta1**self.t)
        v_hat = self.v / (1 - self.beta2**self.t)
        param.sub_(lr * m_hat / (v_hat.sqrt() + self.eps))


class GradientPlanner(Planner):
    """`iterations` projected Adam steps from `grad_restarts` starts: the initial mean and draws around it."""

    def run(self, problem: Problem, gen: torch.Generator, warm: torch.Tensor | None) -> SearchOutcome:
        space, device = problem.space, problem.device
        mean, std = space.initial_distribution(device)
        if warm is not None:
            mean = warm.to(device)
        starts = mean + std * white_noise(self.config.gradient_options().restarts, space.horizon, gen, device)
        starts[0] = mean
        out = adam_descent(self, problem, starts, problem.options.iterations)
        space.round_gripper(out.actions)
        return out


class CEMGradPlanner(Planner):
    """The CEM search, then `grad_steps` projected Adam steps from its plan and its best sample (the better wins).

    Under `time_budget_s` the refinement stops with the budget too (after at least one step), like every search.
    """

    def run(self, problem: Problem, gen: torch.Generator, warm: torch.Tensor | None) -> SearchOutcome:
        cem = cem_search(self, problem, gen, warm, self.config.cem_options("cem"))
        starts = torch.stack([cem.actions, cem.best])
        refined = adam_descent(self, problem, starts, self.config.gradient_options().steps)
        actions = problem.space.round_gripper(refined.actions)
        history = torch.cat([cem.history, refined.history])
        return SearchOutcome(actions, history, cem.evaluated + refined.evaluated, refined.best)
