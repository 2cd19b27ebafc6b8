"""The planning protocol: every search (`CEMConfig.planner`) is built here from the one shared config.

A planner takes a world model and a `CEMConfig` and offers `plan(current_rep, current_state, goal_rep, seed=None,
warm_start=None, should_stop=None) -> PlanResult` and `plan_images(...)`, so the closed-loop controller, the node,
`vjepa2-sim-eval`, replay and the benches select a search by name and never by class.

    cem       reference CEM (Gaussian, top-k refit with momenta; the default)
    icem      iCEM: coloured noise over the horizon, elites kept, shrinking population, best sample returned
    mppi      MPPI: softmax-weighted mean of the samples (temperature `mppi_temperature`)
    gradient  Adam on the actions through the differentiable predictor, `grad_restarts` starts, projected
    cem_grad  CEM, then `grad_steps` Adam steps on its plan and best sample
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vjepa2_core.planning.cem import CEMConfig, CEMPlanner
from vjepa2_core.planning.gradient import CEMGradPlanner, GradientPlanner
from vjepa2_core.planning.icem import ICEMPlanner
from vjepa2_core.planning.mppi import MPPIPlanner

PLANNERS: dict[str, Callable[[Any, CEMConfig], Any]] = {
    "cem": CEMPlanner,
    "icem": ICEMPlanner,
    "mppi": MPPIPlanner,
    "gradient": GradientPlanner,
    "cem_grad": CEMGradPlanner,
}


def make_planner(world_model: Any, config: CEMConfig | None = None) -> Any:
    """The planner `config.planner` names, on `world_model` (a `WorldModel` or the toy)."""
    config = config if config is not None else CEMConfig()
    config.validate()
    return PLANNERS[config.planner](world_model, config)


def check_planner_options(config: CEMConfig) -> None:
    """Range checks of the planner-specific `CEMConfig` fields (called by `CEMConfig.validate`)."""
    checks = [
        (config.time_budget_s >= 0, "time_budget_s must be >= 0 (0: no budget)"),
        (config.icem_noise_beta >= 0, "icem_noise_beta must be >= 0 (0: white noise)"),
        (0.0 <= config.icem_elite_fraction <= 1.0, "icem_elite_fraction must be in [0, 1]"),
        (0.0 < config.icem_population_decay <= 1.0, "icem_population_decay must be in (0, 1]"),
        (config.mppi_temperature > 0, "mppi_temperature must be > 0"),
        (config.grad_lr > 0, "grad_lr must be > 0"),
        (config.grad_restarts >= 1, "grad_restarts must be >= 1"),
        (config.grad_steps >= 0, "grad_steps must be >= 0"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(f"invalid CEMConfig: {msg}")
