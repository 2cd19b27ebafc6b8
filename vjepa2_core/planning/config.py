"""What planners are configured with: each planner's options in a small dataclass, and `CEMConfig`, the flat facade.

The planner node, the params YAMLs in `config/` and `vjepa2-sim-eval` name every setting flat (`cem.horizon`,
`cem.icem_noise_beta`, ...: `settings.py` derives them from the fields of `CEMConfig`), so `CEMConfig` stays one flat
dataclass holding every default once; the planners never read it field by field but ask it for their options
(`search_options`, `action_space`, `cem_options`, `icem_options`, `mppi_options`, `gradient_options`).

Elites kept into the next iteration and a shrinking population are one idea (`CEMOptions.elite_fraction`,
`CEMOptions.population_decay`) with two flat pairs of names, both kept for the ROS parameters: the `icem` planner
reads `icem_elite_fraction` / `icem_population_decay` (its defaults 0.3 / 0.8), every other CEM search reads
`elite_reuse` / `population_decay` (0 / 1, the reference). `ELITE_KNOBS` is that mapping, written once.

This module imports no planner: the planner name is checked by `planners.check_config`, which the factory and the
settings call, so the registry can import the config without a cycle.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from vjepa2_core.planning.action_space import ACTION_DIM, GRIPPER, ActionSpace, Box
from vjepa2_core.planning.energies import ENERGIES, FRAME_MODES


@dataclass(frozen=True)
class SearchOptions:
    """What every planner's `plan` uses: the horizon, the iteration budget, the energy, seeding, warm start, time.

    These options are built only by `CEMConfig`, which holds every default once; they have none of their own."""

    horizon: int
    iterations: int
    energy: str
    energy_frames: str  # score the last predicted frame or all of them
    cached: bool  # incremental K/V-cached rollouts
    seed: int | None  # None: a fresh random seed per plan
    warm_start: bool  # start from the previous plan when the caller gives none
    time_budget_s: float  # > 0: an iteration starts only if it should end within this budget


@dataclass(frozen=True)
class Momenta:
    """Weights of the previous mean / std in a refit, for xyz-and-rotation and for the gripper."""

    mean: float
    std: float
    mean_gripper: float
    std_gripper: float

    def tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha, beta) [7]: per-dimension momenta of the mean and of the std."""
        alpha = torch.full((ACTION_DIM,), self.mean, device=device)
        beta = torch.full((ACTION_DIM,), self.std, device=device)
        alpha[GRIPPER].fill_(self.mean_gripper)
        beta[GRIPPER].fill_(self.std_gripper)
        return alpha, beta


@dataclass(frozen=True)
class CEMOptions:
    """The cross-entropy method: population, elites, momenta; iCEM's selection rules are the two flags."""

    samples: int
    topk: int
    momenta: Momenta
    elite_fraction: float  # fraction of the top-k kept into the next iteration
    population_decay: float  # fresh samples shrink by this factor per iteration
    score_mean_last: bool  # iCEM: the current mean is a candidate of the last iteration
    return_best: bool  # iCEM: return the best sample seen instead of the final mean

    def population(self, iteration: int) -> int:
        """Number of fresh samples at `iteration` (decayed, never below min(samples, 2*topk))."""
        return max(round(self.samples * self.population_decay**iteration), min(self.samples, 2 * self.topk))

    def elites_kept(self) -> int:
        """How many of the top-k enter the next iteration (0: none)."""
        return max(1, math.ceil(self.elite_fraction * self.topk)) if self.elite_fraction > 0 else 0


@dataclass(frozen=True)
class ICEMOptions:
    """iCEM (Pinneri et al. 2020): the CEM options under its rules, and coloured sampling noise."""

    cem: CEMOptions
    noise_beta: float  # power spectrum 1/f^beta over the horizon; 0: white


@dataclass(frozen=True)
class MPPIOptions:
    """MPPI: softmax-weighted refit of all samples."""

    samples: int
    temperature: float  # in units of the iteration's energy std
    momenta: Momenta


@dataclass(frozen=True)
class GradientOptions:
    """Projected Adam on the actions through the differentiable predictor."""

    lr: float  # step size as a fraction of each action bound
    restarts: int  # parallel starts (the gradient planner)
    steps: int  # Adam steps after the CEM search (cem_grad)


# flat (elite fraction, population decay) names per planner; every other planner reads the default pair
ELITE_KNOBS = {"icem": ("icem_elite_fraction", "icem_population_decay")}
DEFAULT_ELITE_KNOBS = ("elite_reuse", "population_decay")


@dataclass
class CEMConfig:
    """Every planner's settings, flat (the ROS parameters `cem.*`). Defaults are the reference world-model wrapper's
    (its effective planning settings); the extensions are off by default."""

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
    elite_reuse: float = 0.0  # CEM: fraction of the top-k kept into the next iteration (ELITE_KNOBS)
    population_decay: float = 1.0  # CEM: fresh samples shrink by this factor per iteration (ELITE_KNOBS)
    workspace: Box | None = None
    # -- anytime search and the other planners' options (off or unused for "cem")
    # > 0: an iteration starts only if it should end within this budget; the first always runs
    time_budget_s: float = 0.0
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

    # -- each planner's options

    def search_options(self) -> SearchOptions:
        return self._same_named(SearchOptions)

    def action_space(self) -> ActionSpace:
        return self._same_named(ActionSpace)

    def _same_named(self, cls: type) -> Any:
        """`cls` built from the flat fields of the same names (its fields are a subset of this config's)."""
        return cls(**{f.name: getattr(self, f.name) for f in fields(cls)})

    def momenta(self) -> Momenta:
        return Momenta(self.momentum_mean, self.momentum_std, self.momentum_mean_gripper, self.momentum_std_gripper)

    def cem_options(self, planner: str = "cem") -> CEMOptions:
        """The CEM options as `planner` reads them (its elite knobs: `ELITE_KNOBS`; iCEM's selection rules)."""
        fraction, decay = (getattr(self, name) for name in ELITE_KNOBS.get(planner, DEFAULT_ELITE_KNOBS))
        icem = planner == "icem"
        return CEMOptions(self.samples, self.topk, self.momenta(), fraction, decay, icem, icem)

    def icem_options(self) -> ICEMOptions:
        return ICEMOptions(self.cem_options("icem"), self.icem_noise_beta)

    def mppi_options(self) -> MPPIOptions:
        return MPPIOptions(self.samples, self.mppi_temperature, self.momenta())

    def gradient_options(self) -> GradientOptions:
        return GradientOptions(self.grad_lr, self.grad_restarts, self.grad_steps)

    def population(self, iteration: int) -> int:
        """Number of fresh samples of the CEM search at `iteration` (see `CEMOptions.population`)."""
        return self.cem_options().population(iteration)

    # -- checks

    def validate(self) -> None:
        """Raise ValueError with a readable message for inconsistent settings (the planner name: `check_config`)."""
        for ok, msg in self.action_space().checks() + self._checks():
            if not ok:
                raise ValueError(f"invalid CEMConfig: {msg}")

    def _checks(self) -> list[tuple[bool, str]]:
        momenta = (self.momentum_mean, self.momentum_std, self.momentum_mean_gripper, self.momentum_std_gripper)
        return [
            (self.iterations >= 1, "iterations must be >= 1"),
            (
                self.samples >= 2 and 2 <= self.topk <= self.samples,
                f"need 2 <= topk <= samples, got topk={self.topk}, samples={self.samples}",
            ),
            (
                all(0.0 <= m < 1.0 for m in momenta),
                "momentum_mean, momentum_std, momentum_mean_gripper, momentum_std_gripper must be in [0, 1)",
            ),
            (0.0 <= self.elite_reuse <= 1.0, "elite_reuse is a fraction of topk in [0, 1]"),
            (0.0 < self.population_decay <= 1.0, "population_decay must be in (0, 1]"),
            (self.energy in ENERGIES, f"energy must be one of {sorted(ENERGIES)}"),
            (self.energy_frames in FRAME_MODES, f"energy_frames must be one of {FRAME_MODES}"),
            (self.time_budget_s >= 0, "time_budget_s must be >= 0 (0: no budget)"),
            (self.icem_noise_beta >= 0, "icem_noise_beta must be >= 0 (0: white noise)"),
            (0.0 <= self.icem_elite_fraction <= 1.0, "icem_elite_fraction must be in [0, 1]"),
            (0.0 < self.icem_population_decay <= 1.0, "icem_population_decay must be in (0, 1]"),
            (self.mppi_temperature > 0, "mppi_temperature must be > 0"),
            (self.grad_lr > 0, "grad_lr must be > 0"),
            (self.grad_restarts >= 1, "grad_restarts must be >= 1"),
            (self.grad_steps >= 0, "grad_steps must be >= 0"),
        ]


def config_to_dict(config: CEMConfig) -> dict[str, Any]:
    """JSON-friendly view of a config (for logs and bench output)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}
