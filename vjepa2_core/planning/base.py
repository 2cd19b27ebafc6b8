"""The planner base: what every search shares, written once, so that a planner implements only its search.

`Planner.plan` checks the inputs, picks the seed, shifts a warm start, sets the deadline of `time_budget_s`, runs the
planner's `run` and scores the plan it returns into a `PlanResult`; `plan_images` encodes images first. A search
loops over an `Iterations` guard, the one place of the stop check (`should_stop` raises `PlanCancelled`), the
out-of-time rule (an iteration starts only if it should end within the budget), the per-iteration energy history and
the best sample seen. Samplers score their candidates with `Planner._energy`, which rolls them out in chunks that fit
the memory a plan may use (`budget.chunk_samples`), so the K/V cache of a large population never has to fit at once.

Nothing in a search reads the device back (no `.item()`, a `torch.Generator` on the device, energies written into a
device tensor) unless a time budget must be checked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from vjepa2_core.devices import synchronize
from vjepa2_core.planning.action_space import ACTION_DIM, ActionSpace, Bounds
from vjepa2_core.planning.budget import available_bytes, chunk_samples
from vjepa2_core.planning.config import CEMConfig, SearchOptions
from vjepa2_core.planning.energies import trajectory_energy


class PlanCancelled(RuntimeError):
    """The caller's `should_stop` fired (deadline, cancel, shutdown) before the search finished."""


class RolloutModel(Protocol):
    """What the planner needs from a world model (`WorldModel` or the toy)."""

    device: torch.device

    def rollout(
        self,
        reps: torch.Tensor,
        states: torch.Tensor,
        actions: torch.Tensor,
        cached: bool = True,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class PlanResult:
    """A plan and how it was found. `actions` [H,7] on the CPU; `to_dict()` is JSON-serialisable."""

    actions: torch.Tensor
    energy: float
    energy_history: list[float]
    wall_time: float
    timings: dict[str, float]
    predicted_states: torch.Tensor
    seed: int
    samples_evaluated: int

    @property
    def first_action(self) -> torch.Tensor:
        return self.actions[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "actions": self.actions.tolist(),
            "first_action": self.first_action.tolist(),
            "energy": float(self.energy),
            "energy_history": [float(e) for e in self.energy_history],
            "wall_time": float(self.wall_time),
            "timings": {k: float(v) for k, v in self.timings.items()},
            "predicted_states": self.predicted_states.tolist(),
            "seed": int(self.seed),
            "samples_evaluated": int(self.samples_evaluated),
        }


def shift_plan(actions: torch.Tensor, horizon: int, steps: int = 1) -> torch.Tensor:
    """Receding-horizon warm start: drop the `steps` executed actions and pad with zero actions to `horizon`."""
    actions = torch.as_tensor(actions, dtype=torch.float32).reshape(-1, ACTION_DIM)[steps : steps + horizon]
    pad = actions.new_zeros(horizon - actions.shape[0], ACTION_DIM)
    return torch.cat([actions, pad], dim=0)


@dataclass
class Problem:
    """One search's inputs on the device: rep [1,N,D], state [1,7], goal [1,N,D], the space and its bounds, the
    search options (iterations, energy, ...), the caller's stop check and the deadline."""

    rep: torch.Tensor
    state: torch.Tensor
    goal: torch.Tensor
    space: ActionSpace
    bounds: Bounds
    options: SearchOptions
    should_stop: Callable[[], bool] | None = None
    deadline: float | None = None  # time.perf_counter() by which the search should end; None: no budget

    @property
    def device(self) -> torch.device:
        return self.rep.device


@dataclass
class SearchOutcome:
    """What a search returns, on the device: the plan [H,7], the best energy per iteration run, the number of samples
    scored, and the best sample seen [H,7] (for searches that refine it, like cem_grad)."""

    actions: torch.Tensor
    history: torch.Tensor
    evaluated: int
    best: torch.Tensor


class Iterations:
    """The iteration guard of a search of at most `total` iterations (see the module docstring).

    `for it in guard:` yields the iterations that may run; after scoring, `guard.record(energy, sample, n)` keeps
    the iteration's lowest energy [], the sample [H,7] that reached it (None: not tracked) and the number of samples
    scored; `guard.outcome(plan)` is the search's answer.
    """

    def __init__(self, problem: Problem, total: int, first_best: torch.Tensor, what: str = "search") -> None:
        self.problem, self.total, self.what = problem, total, what
        self.history = torch.empty(total, device=problem.device)
        self.best, self.best_energy = first_best, torch.full((), float("inf"), device=problem.device)
        self.done = self.evaluated = 0

    def __iter__(self) -> Iterator[int]:
        should_stop, since = self.problem.should_stop, time.perf_counter()
        for it in range(self.total):
            if should_stop is not None and should_stop():
                raise PlanCancelled(f"{self.what} cancelled after {it} of {self.total} iterations")
            if it > 0 and self.out_of_time(it, since):
                return
            yield it

    def out_of_time(self, done: int, since: float) -> bool:
        """True when one more iteration would end past the deadline: the next is assumed to take as long as the
        mean of the `done` run since `since`, so a budgeted plan returns within its budget (give or take one
        iteration's jitter) instead of overrunning it by up to a whole iteration. Never true without a budget."""
        if self.problem.deadline is None:
            return False
        synchronize(self.problem.device)
        now = time.perf_counter()
        return now + (now - since) / max(done, 1) > self.problem.deadline

    def record(self, energy: torch.Tensor, sample: torch.Tensor | None, scored: int) -> None:
        self.history[self.done].copy_(energy)
        if sample is not None:  # None: the search does not use its best sample
            self.best = torch.where(energy < self.best_energy, sample, self.best)
            self.best_energy = torch.minimum(self.best_energy, energy)
        self.evaluated += scored
        self.done += 1

    def outcome(self, actions: torch.Tensor) -> SearchOutcome:
        return SearchOutcome(actions, self.history[: self.done], self.evaluated, self.best)


class Planner:
    """Plans delta end-effector actions that bring the predicted representation closest to a goal representation.

    A planner implements `run(problem, gen, warm) -> SearchOutcome`. `memory_limit` (bytes) bounds the rollouts'
    memory; None: what a plan may use on the device when a search starts (`budget.available_bytes`). `self.chunk` is
    the samples per rollout of the last sampled search.
    """

    def __init__(self, world_model: RolloutModel, config: CEMConfig | None = None, memory_limit: int | None = None):
        self.world_model = world_model
        self.config = config if config is not None else CEMConfig()
        self.config.validate()
        self.memory_limit = memory_limit
        self.chunk = 0
        self.last_result: PlanResult | None = None

    @property
    def space(self) -> ActionSpace:
        return self.config.action_space()

    def run(self, problem: Problem, gen: torch.Generator, warm: torch.Tensor | None) -> SearchOutcome:
        """The search: from the initial distribution (centred on `warm` [H,7] if given) to a plan."""
        raise NotImplementedError

    def plan(
        self,
        current_rep: torch.Tensor,
        current_state: torch.Tensor,
        goal_rep: torch.Tensor,
        seed: int | None = None,
        warm_start: PlanResult | torch.Tensor | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> PlanResult:
        """Search from a precomputed current representation [N,D] (or [1,N,D]) and state [7] toward `goal_rep`.

        `warm_start` is the previous plan (PlanResult or [H',7]); it is shifted by one executed step. With
        `config.warm_start` the planner falls back to its own previous result. `should_stop` is polled once per
        iteration: when it returns True the search ends with `PlanCancelled` (a deadline cancels the work it bounds).
        """
        opts, device = self.config.search_options(), self.world_model.device
        start = time.perf_counter()
        deadline = start + opts.time_budget_s if opts.time_budget_s > 0 else None
        rep, goal = _as_rep(current_rep, "current_rep", device), _as_rep(goal_rep, "goal_rep", device)
        if rep.shape[1:] != goal.shape[1:]:
            raise ValueError(
                f"current rep {tuple(rep.shape[1:])} and goal rep {tuple(goal.shape[1:])} differ in shape"
            )
        state = _as_state(current_state, device)
        if warm_start is None and opts.warm_start:
            warm_start = self.last_result
        if seed is None:
            seed = opts.seed if opts.seed is not None else int.from_bytes(os.urandom(6), "little")
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        prev = None
        if warm_start is not None:
            prev = warm_start.actions if isinstance(warm_start, PlanResult) else warm_start
            prev = shift_plan(prev, opts.horizon).to(device)
        out = self.run(self.problem(rep, state, goal, should_stop, deadline, opts), gen, prev)
        synchronize(device)
        loop_end = time.perf_counter()
        result = self._result(rep, state, goal, out, seed, opts)
        end = time.perf_counter()
        result.wall_time = end - start
        result.timings = {"optimize_s": loop_end - start, "final_eval_s": end - loop_end, "total_s": end - start}
        self.last_result = result
        return result

    def _result(self, rep, state, goal, out: SearchOutcome, seed: int, opts: SearchOptions) -> PlanResult:
        """The plan scored once more, with its predicted states, on the CPU."""
        pred, states = self.world_model.rollout(rep, state, out.actions[None], cached=opts.cached, last_only=False)
        final_energy = trajectory_energy(pred, goal, opts.energy, opts.energy_frames)[0]
        return PlanResult(
            actions=out.actions.float().cpu(),
            energy=float(final_energy.cpu()),
            energy_history=out.history.cpu().tolist(),
            wall_time=0.0,
            timings={},
            predicted_states=states[0].float().cpu(),
            seed=seed,
            samples_evaluated=out.evaluated,
        )

    def plan_images(self, current_image, current_state, goal_image, **kwargs: Any) -> PlanResult:
        """Encode the images with the world model (goal encodings are cached) and plan; adds `encode_s` timing."""
        start = time.perf_counter()
        current = self.world_model.encode(current_image)
        goal = self.world_model.encode_goal(goal_image)
        encode_s = time.perf_counter() - start
        result = self.plan(current, current_state, goal, **kwargs)
        result.timings["encode_s"] = encode_s
        result.wall_time += encode_s
        result.timings["total_s"] = result.wall_time
        return result

    def problem(
        self, rep, state, goal, should_stop=None, deadline: float | None = None, options: SearchOptions | None = None
    ) -> Problem:
        space = self.space
        options = options if options is not None else self.config.search_options()
        return Problem(rep, state, goal, space, space.bounds(rep.device), options, should_stop, deadline)

    def search(
        self,
        rep: torch.Tensor,
        state: torch.Tensor,
        goal: torch.Tensor,
        gen: torch.Generator,
        warm: torch.Tensor | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The search alone, on the device (no time budget): rep [1,N,D], state [1,7], goal [1,N,D], optional initial
        mean [H,7] -> (actions [H,7], best energy per iteration, samples evaluated), without a host sync."""
        out = self.run(self.problem(rep, state, goal, should_stop), gen, warm)
        return out.actions, out.history, out.evaluated

    # -- tools of the samplers

    def rollout_chunk(self, samples: int) -> int:
        """Samples per rollout for populations of up to `samples`: all of them unless they do not fit the memory
        limit (then even chunks that do; at least one sample, the budget check refuses what cannot fit at all)."""
        limit = self.memory_limit if self.memory_limit is not None else available_bytes(self.world_model.device)
        return max(1, chunk_samples(self.world_model, self.config.horizon, samples, limit))

    def _energy(
        self,
        rep: torch.Tensor,
        state: torch.Tensor,
        goal: torch.Tensor,
        actions: torch.Tensor,
        opts: SearchOptions | None = None,
    ) -> torch.Tensor:
        """Energy [B] of each action sequence [B,H,7], rolled out `self.chunk` samples at a time. A search passes
        its `problem.options` so that the loop does not rebuild them per iteration (None: from the config)."""
        opts = opts if opts is not None else self.config.search_options()
        last_only = opts.energy_frames == "last"
        chunk = self.chunk or actions.shape[0]
        energies = []
        for part in actions.split(chunk):
            pred, _ = self.world_model.rollout(rep, state, part, cached=opts.cached, last_only=last_only)
            energies.append(trajectory_energy(pred, goal, opts.energy, opts.energy_frames))
            del pred  # the next chunk's rollout reuses this one's memory
        return energies[0] if len(energies) == 1 else torch.cat(energies)


def white_noise(n: int, horizon: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """Standard normal noise [n, horizon, 7] (white over the horizon, like the reference)."""
    return torch.randn((n, horizon, ACTION_DIM), generator=gen, device=device)


def _as_rep(rep: torch.Tensor, name: str, device: torch.device) -> torch.Tensor:
    rep = torch.as_tensor(rep)
    if rep.ndim == 2:
        rep = rep[None]
    if rep.ndim != 3 or rep.shape[0] != 1:
        raise ValueError(f"{name} must be one frame's tokens [N,D] or [1,N,D], got {tuple(rep.shape)}")
    return rep.to(device)


def _as_state(state: torch.Tensor, device: torch.device) -> torch.Tensor:
    state = torch.as_tensor(state, dtype=torch.float32).reshape(-1)
    if state.shape != (ACTION_DIM,) or not bool(torch.isfinite(state).all()):
        raise ValueError(
            f"current_state must be 7 finite numbers [x,y,z,roll,pitch,yaw,gripper], got {state.tolist()}"
        )
    return state[None].to(device)
