"""Goal-image planning with a V-JEPA 2-AC world model: pose math, world-model wrapper, CEM, safety checks."""

from vjepa2_core.planning.cem import CEMConfig, CEMPlanner, PlanCancelled, PlanResult  # noqa: F401
from vjepa2_core.planning.landscape import energy_landscape  # noqa: F401
from vjepa2_core.planning.planners import PLANNERS, make_planner  # noqa: F401
from vjepa2_core.planning.world_model import WorldModel  # noqa: F401
