"""Gradient planners: Adam on the action sequence through the differentiable predictor, projected onto the bounds.

The energy is a smooth function of the actions (the predictor is a transformer), so a few hundred samples of CEM
can be replaced by a few gradient steps on a handful of starts. After every step the actions are projected back
onto the per-step bounds, the `axis` pins, `close_gripper` and the workspace box (`CEMPlanner._constrain`), so the
result is always executable. `cem_grad` polishes the CEM plan and its best sample with `grad_steps` such steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from vjepa2_core.planning.cem import CEMPlanner, PlanCancelled
from vjepa2_core.planning.energies import trajectory_energy


def adam_descent(
    planner: CEMPlanner,
    rep: torch.Tensor,
    state: torch.Tensor,
    goal: torch.Tensor,
    init: torch.Tensor,
    steps: int,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Projected Adam from the starts `init` [R,H,7] -> (best actions [H,7], best energy per step, evaluations).

    Each step scores all R starts in one batched rollout, keeps the best sequence seen so far and moves every start
    along its own gradient; the final iterates are scored once more. Adam runs on the actions divided by their
    per-dimension bounds, so `grad_lr` is a fraction of `maxnorm` (rotations: `rot_maxnorm`, gripper: `gripper_max`)
    whatever the search space, decaying as 1 / sqrt(1 + step / 10) so that no step count has to be known.
    """
    with torch.inference_mode(False):  # callers (the controller) may plan under inference mode
        # inference-mode tensors cannot be saved for backward: work on ordinary copies
        rep, state, goal, init = (t.clone() for t in (rep, state, goal, init.detach()))
        return _adam_descent(planner, rep, state, goal, init, steps, should_stop)


def _adam_descent(planner, rep, state, goal, init, steps, should_stop):
    cfg, wm, device = planner.config, planner.world_model, rep.device
    bounds = planner._bounds(device)
    scale = torch.where(bounds[1] > 0, bounds[1], torch.ones_like(bounds[1]))  # Adam works on actions / bound
    rollout = getattr(wm, "rollout_differentiable", wm.rollout)  # the toy's rollout is differentiable as it is
    z = (planner._constrain(init, state, bounds) / scale).requires_grad_(True)
    adam = AdamState(z)
    best, best_energy = (z.detach()[0] * scale).clone(), torch.full((), float("inf"), device=device)
    history = torch.empty(steps + 1, device=device)
    done = evaluated = 0
    since = time.perf_counter()
    for it in range(steps + 1):
        if should_stop is not None and should_stop():
            raise PlanCancelled(f"gradient search cancelled after {it} of {steps} steps")
        if it > 0 and planner.out_of_time(device, it, since):
            break
        last = it == steps
        with torch.enable_grad():
            x = z * scale
            pred, _ = rollout(rep, state, x, cached=cfg.cached, last_only=cfg.energy_frames == "last")
            energy = trajectory_energy(pred, goal, cfg.energy, cfg.energy_frames)
            grad = None if last else torch.autograd.grad(energy.sum(), z)[0]
        energy = energy.detach()
        evaluated += z.shape[0]
        low = energy.argmin()
        history[it].copy_(energy[low])
        best = torch.where(energy[low] < best_energy, x.detach()[low], best)
        best_energy = torch.minimum(best_energy, energy[low])
        done = it + 1
        if last:
            break
        with torch.no_grad():
            adam.step(z, grad, cfg.grad_lr / (1 + it / 10) ** 0.5)  # settle near the optimum, any budget
            z.copy_(planner._constrain(z.detach() * scale, state, bounds) / scale)
    return best, history[:done], evaluated


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


class GradientPlanner(CEMPlanner):
    """`iterations` projected Adam steps from `grad_restarts` starts: the initial mean and draws around it."""

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
        mean, std = self._initial_distribution(device)
        if warm is not None:
            mean = warm.to(device)
        starts = mean + std * self.sample_noise(cfg.grad_restarts, gen, device)
        starts[0] = mean
        actions, history, evaluated = adam_descent(self, rep, state, goal, starts, cfg.iterations, should_stop)
        return self.round_gripper(actions), history, evaluated


class CEMGradPlanner(CEMPlanner):
    """The CEM search, then `grad_steps` projected Adam steps from its plan and its best sample (the better wins).

    Under `time_budget_s` the refinement stops with the budget too (after at least one step), like every search.
    """

    def search(
        self,
        rep: torch.Tensor,
        state: torch.Tensor,
        goal: torch.Tensor,
        gen: torch.Generator,
        warm: torch.Tensor | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        plan, history, evaluated = super().search(rep, state, goal, gen, warm, should_stop)
        starts = torch.stack([plan, self.best_sample[0]])
        steps = self.config.grad_steps
        actions, refined, more = adam_descent(self, rep, state, goal, starts, steps, should_stop)
        return self.round_gripper(actions), torch.cat([history, refined]), evaluated + more
