"""The planner registry: every search (`CEMConfig.planner`) by name, each built from the one shared config.

A planner is a `base.Planner` subclass in a file of its own that implements `run` (its search); the base gives it
`plan(current_rep, current_state, goal_rep, seed=None, warm_start=None, should_stop=None) -> PlanResult` and
`plan_images(...)`, so the closed-loop controller, the node, `vjepa2-sim-eval`, replay and the benches select a
search by name and never by class. A new planner is its file plus one line in `PLANNERS` (which imports it).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from vjepa2_core.planning.base import Planner
from vjepa2_core.planning.config import CEMConfig


def _load(module: str, name: str) -> type[Planner]:
    """The planner class `name` of `vjepa2_core.planning.<module>` (so that one registry line also imports it)."""
    return getattr(import_module(f"vjepa2_core.planning.{module}"), name)


PLANNERS: dict[str, type[Planner]] = {
    "cem": _load("cem", "CEMPlanner"),  # reference CEM (Gaussian, top-k refit with momenta; the default)
    "icem": _load("icem", "ICEMPlanner"),  # coloured noise over the horizon, elites kept, shrinking population
    "mppi": _load("mppi", "MPPIPlanner"),  # softmax-weighted mean of the samples (temperature `mppi_temperature`)
    "gradient": _load("gradient", "GradientPlanner"),  # Adam through the predictor, `grad_restarts` starts
    "cem_grad": _load("gradient", "CEMGradPlanner"),  # CEM, then `grad_steps` Adam steps on its plan and best sample
    "predictive": _load("predictive", "PredictiveSamplingPlanner"),  # perturb the best plan so far, keep the best
}


def make_planner(world_model: Any, config: CEMConfig | None = None) -> Planner:
    """The planner `config.planner` names, on `world_model` (a `WorldModel` or the toy)."""
    config = config if config is not None else CEMConfig()
    check_planner_options(config)
    return PLANNERS[config.planner](world_model, config)


def check_planner_options(config: CEMConfig) -> None:
    """`config.validate()` and that `config.planner` is registered: the whole check of a config (ValueError)."""
    if config.planner not in PLANNERS:
        raise ValueError(f"invalid CEMConfig: planner must be one of {sorted(PLANNERS)}, got {config.planner!r}")
    config.validate()
