"""Cross-entropy-method planning over end-effector delta actions, batched over samples on the model's device.

The default `CEMConfig` reproduces the reference V-JEPA 2-AC planner (Gaussian over xyz + gripper, zero rotation
deltas, per-coordinate clipping, top-k refit with separate momenta, gripper rounding, L1 energy on the last predicted
frame). Extensions are opt-in: warm start from the shifted previous plan, elite reuse and a shrinking population
(iCEM), rotation deltas, L2 / cosine energies, energy over every predicted frame and a workspace box.

The optimisation loop never leaves the device: no `.item()`, no numpy, a `torch.Generator` on the device for
sampling, and the per-iteration energies are written into a device tensor that is read once at the end. Its memory
is bounded by construction: an iteration's samples are rolled out in chunks sized (once per search, `budget`) from
the memory a plan may use, so the K/V cache of a large budget never has to fit at once; the plan stays the same
(a chunk's matmuls may round an energy's last bit differently).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import torch

from vjepa2_core.planning.budget import available_bytes, chunk_samples
from vjepa2_core.planning.energies import ENERGIES, FRAME_MODES, trajectory_energy

ACTION_DIM = 7
GRIPPER = 6
AXIS_NAMES = {"x": 0, "y": 1, "z": 2, "roll": 3, "pitch": 4, "yaw": 5, "gripper": 6}
# The reference planner samples 4 dims [x, y, z, gripper]; its integer `axis` keys index that vector.
REFERENCE_AXIS_INDEX = {0: 0, 1: 1, 2: 2, 3: GRIPPER, -1: GRIPPER}


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
class CEMConfig:
    """CEM hyper-parameters. Defaults are the reference world-model wrapper's (its effective planning settings)."""

    planner: str = "cem"  # which search (vjepa2_core.planning.planners.PLANNERS); all share this config
    horizon: int = 2
    samples: int = 400
    topk: int = 10
    iterations: int = 10
    momentum_mean: float = 0.15
    momentum_std: float = 0.15
    momentum_mean_gripper: float = 0.15
    momentum_std_gripper: float = 0.15
    maxnorm: float = 0.05
    gripper_max: float = 0.75
    gripper_init_std: float = 1.0
    gripper_round: float = 0.25
    axis: dict[int | str, float] = field(default_factory=dict)
    close_gripper: int | None = None
    energy: str = "l1"
    energy_frames: str = "last"
    seed: int | None = None
    cached: bool = True
    # -- extensions (off by default, i.e. reference behaviour)
    rotation: bool = False
    rot_maxnorm: float = 0.1
    warm_start: bool = False
    elite_reuse: float = 0.0
    population_decay: float = 1.0
    workspace: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None
    # -- anytime search and the other planners' options (vjepa2_core.planning.planners; off or unused for "cem")
    time_budget_s: float = (
        0.0  # > 0: an iteration starts only if it should end within this budget; the first always runs
    )
    icem_noise_beta: float = 2.0  # iCEM: coloured sampling noise over the horizon, power spectrum 1/f^beta
    icem_elite_fraction: float = 0.3  # iCEM: fraction of the top-k kept into the next iteration
    icem_population_decay: float = 0.8  # iCEM: fresh samples shrink by this factor per iteration
    mppi_temperature: float = 0.1  # MPPI: softmax temperature in units of the iteration's energy std
    grad_lr: float = 0.1  # gradient planners: Adam step size as a fraction of each action bound (maxnorm ...)
    grad_restarts: int = 4  # gradient: parallel starts (the initial mean and random draws around it)
    grad_steps: int = 5  # cem_grad: Adam steps on the CEM plan after the search

    @classmethod
    def reference_cem_defaults(cls, **overrides: Any) -> CEMConfig:
        """The defaults of the reference `cem()` function itself (100 iterations, rollout 1)."""
        base = dict(horizon=1, samples=100, topk=10, iterations=100, momentum_mean=0.25, momentum_std=0.95)
        return cls(**{**base, **overrides})

    @classmethod
    def notebook(cls, **overrides: Any) -> CEMConfig:
        """The reference CPU demo notebook's cheap settings."""
        base = dict(horizon=2, samples=25, topk=10, iterations=2, momentum_std=0.75, maxnorm=0.075)
        return cls(**{**base, **overrides})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CEMConfig:
        """Build from a mapping (e.g. a YAML section) with a clear error for unknown keys; validated."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown CEMConfig keys {unknown}; valid keys: {sorted(known)}")
        values = dict(values)
        if values.get("workspace") is not None:
            values["workspace"] = tuple(tuple(float(v) for v in corner) for corner in values["workspace"])
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ValueError with a readable message for inconsistent settings."""
        from vjepa2_core.planning.planners import PLANNERS

        checks = [
            (self.planner in PLANNERS, f"planner must be one of {sorted(PLANNERS)}"),
            (self.horizon >= 1, "horizon must be >= 1"),
            (self.iterations >= 1, "iterations must be >= 1"),
            (
                self.samples >= 2 and 2 <= self.topk <= self.samples,
                f"need 2 <= topk <= samples, got topk={self.topk}, samples={self.samples}",
            ),
            (
                all(0.0 <= m < 1.0 for m in self._momenta()),
                "momentum_mean, momentum_std, momentum_mean_gripper, momentum_std_gripper must be in [0, 1)",
            ),
            (self.maxnorm > 0 and self.rot_maxnorm > 0 and self.gripper_max >= 0, "bounds must be positive"),
            (0.0 <= self.elite_reuse <= 1.0, "elite_reuse is a fraction of topk in [0, 1]"),
            (0.0 < self.population_decay <= 1.0, "population_decay must be in (0, 1]"),
            (self.energy in ENERGIES, f"energy must be one of {sorted(ENERGIES)}"),
            (self.energy_frames in FRAME_MODES, f"energy_frames must be one of {FRAME_MODES}"),
            (self.close_gripper is None or self.close_gripper >= 0, "close_gripper must be None or >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"invalid CEMConfig: {msg}")
        from vjepa2_core.planning.planners import check_planner_options

        check_planner_options(self)
        for key in self.axis:
            axis_index(key)
        if self.workspace is not None:
            lo, hi = (torch.as_tensor(b, dtype=torch.float32) for b in self.workspace)
            if lo.shape != (3,) or hi.shape != (3,) or bool((lo > hi).any()):
                raise ValueError(
                    f"invalid CEMConfig: workspace must be ((xmin,ymin,zmin),(xmax,ymax,zmax)), got {self.workspace}"
                )

    def _momenta(self) -> tuple[float, float, float, float]:
        return (self.momentum_mean, self.momentum_std, self.momentum_mean_gripper, self.momentum_std_gripper)

    def population(self, iteration: int) -> int:
        """Number of fresh samples at `iteration` (iCEM-style decay, never below min(samples, 2*topk))."""
        return max(round(self.samples * self.population_decay**iteration), min(self.samples, 2 * self.topk))


def axis_index(key: int | str) -> int:
    """Map an `axis` key (reference 4-D index 0-3/-1, or a name such as 'z' or 'gripper') to the 7-D action index."""
    if isinstance(key, str) and key in AXIS_NAMES:
        return AXIS_NAMES[key]
    if isinstance(key, int) and key in REFERENCE_AXIS_INDEX:
        return REFERENCE_AXIS_INDEX[key]
    raise ValueError(f"invalid axis key {key!r}: use 0,1,2 (xyz), 3/-1 (gripper) or one of {list(AXIS_NAMES)}")


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


class CEMPlanner:
    """Plans delta end-effector actions that bring the predicted representation closest to a goal representation.

    `memory_limit` (bytes) bounds the rollouts' memory; None: what a plan may use on the device when a search starts
    (`budget.available_bytes`). `self.chunk` is the samples per rollout of the last search.
    """

    def __init__(self, world_model: RolloutModel, config: CEMConfig | None = None, memory_limit: int | None = None):
        self.world_model = world_model
        self.config = config if config is not None else CEMConfig()
        self.config.validate()
        self.memory_limit = memory_limit
        self.chunk = 0
        self.last_result: PlanResult | None = None

    # -- public API

    def plan(
        self,
        current_rep: torch.Tensor,
        current_state: torch.Tensor,
        goal_rep: torch.Tensor,
        seed: int | None = None,
        warm_start: PlanResult | torch.Tensor | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> PlanResult:
        """Run CEM from a precomputed current representation [N,D] (or [1,N,D]) and state [7] toward `goal_rep`.

        `warm_start` is the previous plan (PlanResult or [H',7]); it is shifted by one executed step. With
        `config.warm_start` the planner falls back to its own previous result. `should_stop` is polled once per
        iteration: when it returns True the search ends with `PlanCancelled` (a deadline cancels the work it bounds).
        """
        cfg, device = self.config, self.world_model.device
        start = time.perf_counter()
        self._deadline = start + cfg.time_budget_s if cfg.time_budget_s > 0 else None
        rep, goal = _as_rep(current_rep, "current_rep", device), _as_rep(goal_rep, "goal_rep", device)
        if rep.shape[1:] != goal.shape[1:]:
            raise ValueError(
                f"current rep {tuple(rep.shape[1:])} and goal rep {tuple(goal.shape[1:])} differ in shape"
            )
        state = _as_state(current_state, device)
        if warm_start is None and cfg.warm_start:
            warm_start = self.last_result
        if seed is None:
            seed = cfg.seed if cfg.seed is not None else int.from_bytes(os.urandom(6), "little")
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)

        prev = None
        if warm_start is not None:
            prev = warm_start.actions if isinstance(warm_start, PlanResult) else warm_start
            prev = shift_plan(prev, cfg.horizon).to(device)
        try:
            actions, history, evaluated = self.search(rep, state, goal, gen, prev, should_stop)
        finally:
            self._deadline = None  # a later direct `search` call has no budget
        _sync(device)
        loop_end = time.perf_counter()

        pred, states = self.world_model.rollout(rep, state, actions[None], cached=cfg.cached, last_only=False)
        final_energy = trajectory_energy(pred, goal, cfg.energy, cfg.energy_frames)[0]
        result = PlanResult(
            actions=actions.float().cpu(),
            energy=float(final_energy.cpu()),
            energy_history=history.cpu().tolist(),
            wall_time=0.0,
            timings={},
            predicted_states=states[0].float().cpu(),
            seed=seed,
            samples_evaluated=evaluated,
        )
        end = time.perf_counter()
        result.wall_time = end - start
        result.timings = {"optimize_s": loop_end - start, "final_eval_s": end - loop_end, "total_s": end - start}
        self.last_result = result
        return result

    def search(
        self,
        rep: torch.Tensor,
        state: torch.Tensor,
        goal: torch.Tensor,
        gen: torch.Generator,
        warm: torch.Tensor | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The CEM loop on the device: rep [1,N,D], state [1,7], goal [1,N,D], optional initial mean [H,7].

        Returns (actions [H,7], best energy per iteration [iterations done], number of samples evaluated), all
        without a host synchronisation (the returned tensors stay on the device) unless `time_budget_s` is set.
        The best sample seen is kept in `self.best_sample` (actions [H,7], energy []) for refining planners.
        """
        cfg, device = self.config, rep.device
        self.chunk = self.rollout_chunk(self.population(0))
        bounds = self._bounds(device)
        mean, std, warm = self._start_distribution(state, bounds, warm, device)
        alpha, beta = self._momenta(device)
        history = torch.empty(cfg.iterations, device=device)
        elites = elite_energy = None
        best, best_energy = mean.clone(), torch.full((), float("inf"), device=device)
        evaluated = done = 0
        since = time.perf_counter()
        for it in range(cfg.iterations):
            if should_stop is not None and should_stop():
                raise PlanCancelled(f"search cancelled after {it} of {cfg.iterations} iterations")
            if it > 0 and self.out_of_time(device, it, since):
                break
            n = self.population(it)
            cand = mean + std * self.sample_noise(n, gen, device)
            if it == 0 and warm is not None:
                cand[0] = warm
            if self.mean_in_last_iteration and it == cfg.iterations - 1:
                cand[-1] = mean
            cand = self._constrain(cand, state, bounds)
            energy = self._energy(rep, state, goal, cand)
            evaluated += n
            if elites is not None:
                cand, energy = torch.cat([elites, cand]), torch.cat([elite_energy, energy])
            top = energy.topk(cfg.topk, largest=False)
            selected = cand[top.indices]
            history[it].copy_(top.values[0])
            best = torch.where(top.values[0] < best_energy, selected[0], best)
            best_energy = torch.minimum(best_energy, top.values[0])
            mean = (1 - alpha) * selected.mean(0) + alpha * mean
            std = (1 - beta) * selected.std(0) + beta * std
            if self.elite_fraction() > 0:
                keep = max(1, math.ceil(self.elite_fraction() * cfg.topk))
                elites, elite_energy = selected[:keep], top.values[:keep]
            done = it + 1
        self.best_sample = best, best_energy
        actions = self._constrain((best if self.returns_best_sample else mean)[None], state, bounds)[0]
        return self.round_gripper(actions), history[:done], evaluated

    # -- what the CEM variants change (iCEM overrides these)

    mean_in_last_iteration = False  # also score the current mean in the last iteration
    returns_best_sample = False  # return the best sample seen instead of the final mean (reference: the mean)

    def population(self, iteration: int) -> int:
        return self.config.population(iteration)

    def elite_fraction(self) -> float:
        return self.config.elite_reuse

    def sample_noise(self, n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
        """Standard normal noise [n, horizon, 7] (white over the horizon, like the reference)."""
        return torch.randn((n, self.config.horizon, ACTION_DIM), generator=gen, device=device)

    def round_gripper(self, actions: torch.Tensor) -> torch.Tensor:
        """Reference rule: gripper commands below `gripper_round` in magnitude become exactly zero."""
        small = actions[:, GRIPPER].abs() < self.config.gripper_round
        actions[:, GRIPPER] = torch.where(small, 0.0, actions[:, GRIPPER])
        return actions

    def out_of_time(self, device: torch.device, done: int, since: float) -> bool:
        """True when one more iteration would end past `time_budget_s` (counted from the start of `plan`).

        The next iteration is assumed to take as long as the mean of the `done` iterations run since `since`, so a
        budgeted plan returns within its budget (give or take one iteration's jitter) instead of overrunning it by
        up to a whole iteration. Never true without a budget.
        """
        deadline = getattr(self, "_deadline", None)
        if deadline is None:
            return False
        _sync(device)
        now = time.perf_counter()
        return now + (now - since) / max(done, 1) > deadline

    def plan_images(self, current_image, current_state, goal_image, **kwargs: Any) -> PlanResult:
        """Encode the images with the world model (goal encodings are cached) and plan; adds `encode_s` timing."""
        start = time.perf_counter()
        current = self.world_model.encode(current_image)
        self.last_current_rep = current  # callers that evaluate more (e.g. the hold rule) need not re-encode
        goal = self.world_model.encode_goal(goal_image)
        encode_s = time.perf_counter() - start
        result = self.plan(current, current_state, goal, **kwargs)
        result.timings["encode_s"] = encode_s
        result.wall_time += encode_s
        result.timings["total_s"] = result.wall_time
        return result

    # -- pieces of the algorithm

    def _start_distribution(
        self, state: torch.Tensor, bounds: tuple[torch.Tensor, ...], warm: torch.Tensor | None, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(mean, std, warm): the initial sampling distribution, centred on the warm start, constrained."""
        mean, std = self._initial_distribution(device)
        if warm is not None:
            warm = self._constrain(warm[None], state, bounds)[0]
            mean = warm.clone()
        return mean, std, warm

    def _initial_distribution(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        mean = torch.zeros(cfg.horizon, ACTION_DIM, device=device)
        std = torch.zeros(cfg.horizon, ACTION_DIM, device=device)
        std[:, :3].fill_(cfg.maxnorm)
        if cfg.rotation:
            std[:, 3:6].fill_(cfg.rot_maxnorm)
        std[:, GRIPPER].fill_(cfg.gripper_init_std)
        for key, value in cfg.axis.items():
            mean[:, axis_index(key)].fill_(value)
        return mean, std

    def _momenta(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        alpha = torch.full((ACTION_DIM,), cfg.momentum_mean, device=device)
        beta = torch.full((ACTION_DIM,), cfg.momentum_std, device=device)
        alpha[GRIPPER].fill_(cfg.momentum_mean_gripper)
        beta[GRIPPER].fill_(cfg.momentum_std_gripper)
        return alpha, beta

    def _bounds(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Per-step action bounds (-hi, hi) and, with a workspace, its corners; built once per search."""
        cfg = self.config
        rot = cfg.rot_maxnorm if cfg.rotation else 0.0
        hi = _filled(device, [cfg.maxnorm] * 3 + [rot] * 3 + [cfg.gripper_max])
        if cfg.workspace is None:
            return -hi, hi
        return -hi, hi, _filled(device, cfg.workspace[0]), _filled(device, cfg.workspace[1])

    def _constrain(self, actions: torch.Tensor, state: torch.Tensor, bounds: tuple[torch.Tensor, ...]):
        """Clip to the per-step bounds, apply `axis` pins and `close_gripper`, then keep positions in the workspace."""
        cfg = self.config
        actions = torch.maximum(torch.minimum(actions, bounds[1]), bounds[0])
        for key, value in cfg.axis.items():
            actions[..., axis_index(key)].fill_(value)
        if cfg.close_gripper is not None:
            actions[..., cfg.close_gripper :, GRIPPER].fill_(1.0)
        if len(bounds) == 2:
            return actions
        lo, hi = bounds[2], bounds[3]
        pos = state[..., :3].expand(actions.shape[0], 3)
        steps = []
        for h in range(actions.shape[1]):
            target = torch.maximum(torch.minimum(pos + actions[:, h, :3], hi), lo)
            step = (target - pos).clamp(-cfg.maxnorm, cfg.maxnorm)
            steps.append(step)
            pos = pos + step
        return torch.cat([torch.stack(steps, dim=1), actions[..., 3:]], dim=-1)

    def rollout_chunk(self, samples: int) -> int:
        """Samples per rollout for populations of up to `samples`: all of them unless they do not fit the memory
        limit (then even chunks that do; at least one sample, the budget check refuses what cannot fit at all)."""
        limit = self.memory_limit if self.memory_limit is not None else available_bytes(self.world_model.device)
        return max(1, chunk_samples(self.world_model, self.config.horizon, samples, limit))

    def _energy(self, rep: torch.Tensor, state: torch.Tensor, goal: torch.Tensor, actions: torch.Tensor):
        """Energy [B] of each action sequence [B,H,7], rolled out `self.chunk` samples at a time."""
        cfg = self.config
        last_only = cfg.energy_frames == "last"
        chunk = self.chunk or actions.shape[0]
        energies = []
        for part in actions.split(chunk):
            pred, _ = self.world_model.rollout(rep, state, part, cached=cfg.cached, last_only=last_only)
            energies.append(trajectory_energy(pred, goal, cfg.energy, cfg.energy_frames))
            del pred  # the next chunk's rollout reuses this one's memory
        return energies[0] if len(energies) == 1 else torch.cat(energies)


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


def _filled(device: torch.device, values) -> torch.Tensor:
    """A small constant vector made on the device: `tensor[i] = scalar` would copy from the host (a CUDA sync)."""
    return torch.cat([torch.full((1,), float(v), device=device) for v in values])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def config_to_dict(config: CEMConfig) -> dict[str, Any]:
    """JSON-friendly view of a config (for logs and bench output)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}
