"""The planner registry: every search (`CEMConfig.planner`) by name, each built from the one shared config.

A planner is a `base.Planner` subclass in a file of its own that implements `run` (its search); the base gives it
`plan(current_rep, current_state, goal_rep, seed=None, warm_start=None, should_stop=None) -> PlanResult` and
`plan_images(...)`, so the closed-loop controller, the node, `vjepa2-sim-eval`, replay and the benches select a
search by name and never by class. A new planner is its file plus its import and one line in `PLANNERS`.
"""

from __future__ import annotations

from typing import Any

from vjepa2_core.planning.base import Planner
from vjepa2_core.planning.cem import CEMPlanner
from vjepa2_core.planning.config import CEMConfig
from vjepa2_core.planning.gradient import CEMGradPlanner, GradientPlanner
from vjepa2_core.planning.icem import ICEMPlanner
from vjepa2_core.planning.mppi import MPPIPlanner
from vjepa2_core.planning.predictive import PredictiveSamplingPlanner

PLANNERS: dict[str, type[Planner]] = {
    "cem": CEMPlanner,  # reference CEM (Gaussian, top-k refit with momenta; the default)
    "icem": ICEMPlanner,  # coloured noise over the horizon, elites kept, shrinking population
    "mppi": MPPIPlanner,  # softmax-weighted mean of the samples (temperature `mppi_temperature`)
    "gradient": GradientPlanner,  # Adam through the predictor, `grad_restarts` starts
    "cem_grad": CEMGradPlanner,  # CEM, then `grad_steps` Adam steps on its plan and best sample
    "predictive": PredictiveSamplingPlanner,  # perturb the best plan so far, keep the best
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
