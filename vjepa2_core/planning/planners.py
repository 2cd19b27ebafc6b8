"""The planning protocol: every search (`CEMConfig.planner`) is built here from the one shared config.

A planner takes a world model and a `CEMConfig` and offers `plan(current_rep, current_state, goal_rep, seed=None,
warm_start=None, should_stop=None) -> PlanResult` and `plan_images(...)`, so the closed-loop controller, the node,
`vjepa2-sim-eval`, replay and the benches select a search by name and never by class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vjepa2_core.planning.cem import CEMConfig, CEMPlanner

PLANNERS: dict[str, Callable[[Any, CEMConfig], Any]] = {"cem": CEMPlanner}


def make_planner(world_model: Any, config: CEMConfig | None = None) -> Any:
    """The planner `config.planner` names, on `world_model` (a `WorldModel` or the toy)."""
    config = config if config is not None else CEMConfig()
    config.validate()
    return PLANNERS[config.planner](world_model, config)
