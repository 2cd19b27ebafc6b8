"""Goal-image planning with a V-JEPA 2-AC world model: pose math, world-model wrapper, planners, safety checks."""

from vjepa2_core.planning.base import Planner, PlanResult  # noqa: F401
from vjepa2_core.planning.cem import CEMPlanner, PlanCancelled  # noqa: F401
from vjepa2_core.planning.config import CEMConfig  # noqa: F401
from vjepa2_core.planning.landscape import energy_landscape  # noqa: F401
from vjepa2_core.planning.planners import PLANNERS, make_planner  # noqa: F401
from vjepa2_core.planning.world_model import WorldModel  # noqa: F401
