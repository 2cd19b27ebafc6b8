"""The planner node's ~/plan_to_goal and ~/camera_frame answers: a request's inputs and budget checked, one plan
on the plan worker, the response filled. Bad input is answered with its reason, never raised to the executor."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from vjepa2_core.planning import safety
from vjepa2_core.planning.cem import CEMConfig
from vjepa2_core.planning.inputs import Observation
from vjepa2_ros import conversions as conv
from vjepa2_ros.planner_params import MAX_BUDGET

if TYPE_CHECKING:
    from vjepa2_ros.planner_node import PlannerNode

CLEANED_UP = "cleaned up during the plan: configure again"  # the answer of a plan whose model cleanup freed


def request_inputs(req: Any, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
    """The image and state [7] to plan from: the request's, else the latest received; raises ValueError."""
    image = obs.image if conv.is_empty_image(req.current_image) else conv.image_to_rgb(req.current_image)
    state = obs.state() if len(req.current_state) == 0 else np.asarray(req.current_state, np.float64)
    if image is None:
        raise ValueError("no current image: none in the request and no camera frame received")
    if state is None:
        raise ValueError("no current state: none in the request and no end-effector pose received")
    if state.shape != (7,) or not safety.all_finite(state):
        raise ValueError(f"current_state must be 7 finite values, got {state.tolist()}")
    return image, state


def request_budget(req: Any, cem: CEMConfig) -> tuple[dict[str, int], dict[str, int], bool]:
    """The request's budget (0 = node default), the budget in effect and whether it differs from the configured
    one; raises ValueError beyond `MAX_BUDGET`."""
    budget = {"horizon": req.horizon, "samples": req.samples, "iterations": req.iterations}
    for name, value in budget.items():
        if not 0 <= value <= MAX_BUDGET[name]:
            raise ValueError(f"{name} must be in [0, {MAX_BUDGET[name]}] (0 = node default), got {value}")
    effective = {name: value or getattr(cem, name) for name, value in budget.items()}
    custom = any(effective[name] != getattr(cem, name) for name in effective)
    return budget, effective, custom


def answer(resp: Any, success: bool, message: str) -> Any:
    resp.success, resp.message = success, message
    return resp


def plan_to_goal(node: PlannerNode, req: Any, resp: Any) -> Any:
    """One plan toward the request's goal (no motion); every outcome is an answer."""
    controller = node.controller
    if controller is None:
        return answer(resp, False, "not configured: trigger the configure transition (or autostart)")
    try:
        goal = node.resolve_goal(req.goal_image)
        obs = node.inputs.snapshot()
        image, state = request_inputs(req, obs)
        budget, effective, custom = request_budget(req, node.settings.planning.cem)
        # memory always; time only for a budget other than the configured one (its deadline is the bound)
        refusal = node.budget_refusal(controller.world_model, **effective, measured=custom)
        if refusal:
            raise ValueError(f"refused: {refusal}")
    except ValueError as exc:  # ImageDecodeError is a ValueError
        return answer(resp, False, str(exc))
    seed = int(req.seed) if req.seed else None
    result, reasons, elapsed = node.run_plan(
        lambda should_stop: controller.plan(image, state, goal, budget, seed=seed, should_stop=should_stop),
        lambda: CLEANED_UP if node.controller is not controller else "",
    )
    resp.planning_time = float(elapsed)
    if node.controller is not controller:  # cleanup freed the model while it planned: nothing of it is used
        return answer(resp, False, f"refused: {CLEANED_UP}")
    if result is not None:
        node.record_plan(result, elapsed, controller.world_model, effective)
        actions = result.actions.detach().cpu().double().numpy()
        reasons = safety.check_plan(actions, result.energy, elapsed, node.settings.limits)
    if result is None or reasons:
        return answer(resp, False, "planning failed: " + ", ".join(reasons))
    resp.actions = actions.reshape(-1).tolist()
    resp.horizon = int(actions.shape[0])
    resp.energy = float(result.energy)
    node.views.publish(image, goal, state, actions, result.energy, obs.frame_id)
    return answer(resp, True, f"planned {actions.shape[0]} steps in {elapsed:.3f} s")


def camera_frame(node: PlannerNode, resp: Any) -> Any:
    """The latest decoded camera frame, the one plans start from (what a captured goal image must match)."""
    obs = node.inputs.snapshot()
    if obs.image is None:
        return answer(resp, False, "no camera frame received yet")
    controller = node.controller
    resp.image = conv.rgb_to_image(obs.image, "rgb8", node.get_clock().now().to_msg())
    resp.age = time.monotonic() - obs.image_time
    resp.crop_size = 0 if controller is None else int(controller.world_model.crop_size)
    return answer(resp, True, f"{obs.image.shape[1]}x{obs.image.shape[0]} frame, {resp.age:.3f} s old")
