"""A tiny task registered in one place (tests/test_sim_tasks.py): push seen from farther back, a 4 cm success
threshold, one demonstration frame by default and a hold-only exploration mix. Imported by the test, and by the
node processes through VJEPA2_SIM_TASKS=sim_task_plugin."""

from vjepa2_ros.sim.env import scripted_push_action
from vjepa2_ros.sim.paths import SHIPPED_PUSH_MODEL, SIM_PUSH_PLANNER_PARAMS
from vjepa2_ros.sim.tasks import SimTask, register

TINY = register(
    SimTask(
        name="push_far_view",
        kind="push",
        gym_id="FetchPush-v4",
        camera={"lookat": [1.30, 0.75, 0.42], "distance": 0.9, "azimuth": 180.0, "elevation": -70.0},
        demonstrator=scripted_push_action,
        success_m=0.04,
        model=SHIPPED_PUSH_MODEL,
        params=SIM_PUSH_PLANNER_PARAMS,
        exploration={"hold": 1.0},
        subgoals=1,
    ),
    replace=True,
)
