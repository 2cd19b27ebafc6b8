"""Talking to a running `vjepa2_planner`: send a ReachGoal (feedback, cancel on request), plan once, fetch the frame
it plans from, set its CEM budget for a goal. The one client of `vjepa2-goal` and the simulator demo.

Every wait goes through a `Wait` function (spin the node until a condition holds or a deadline passes), so a caller
that spins its own way (the demo also watches its child processes) keeps doing so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import rclpy
from rclpy.action import ActionClient
from rclpy.node import Node

from vjepa2_interfaces.action import ReachGoal
from vjepa2_interfaces.srv import CameraFrame, PlanToGoal

PLANNER = "/vjepa2_planner"
BUDGET_FIELDS = ("samples", "iterations", "horizon")  # the order of `--budget samples,iterations,horizon`
ANSWER_TIMEOUT = 30.0  # s for the node to accept a goal, answer a cancel, or confirm it

# wait(predicate, timeout s, what is awaited): returns once predicate() holds, raises on timeout
Wait = Callable[[Callable[[], bool], float, str], None]


class GoalError(RuntimeError):
    """The planner refused the request or did not answer in time."""


class NoPlanner(GoalError):
    """No planner node answers at the given name."""


def spin_wait(node: Node) -> Wait:
    """A `Wait` that spins `node` itself (for a single-threaded command-line client)."""

    def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not predicate():
            left = end - time.monotonic()
            if left <= 0:
                raise GoalError(f"timed out after {timeout:.0f} s waiting for {what}")
            rclpy.spin_once(node, timeout_sec=min(0.05, left))

    return wait


def status_name(code: int) -> str:
    """An action GoalStatus code as the word the tools print (succeeded, aborted, canceled, ...)."""
    from action_msgs.msg import GoalStatus

    names = {
        GoalStatus.STATUS_SUCCEEDED: "succeeded",
        GoalStatus.STATUS_ABORTED: "aborted",
        GoalStatus.STATUS_CANCELED: "canceled",
    }
    return names.get(code, f"status {code}")


@dataclass
class ReachOutcome:
    """How a ReachGoal ended: the action status word, the node's result, and whether this client asked to cancel."""

    status: str
    result: Any  # ReachGoal.Result
    cancel_requested: bool = False

    @property
    def reached(self) -> bool:
        return self.status == "succeeded" and bool(self.result.success)


class GoalClient:
    """Clients for one planner node's ~/reach_goal, ~/plan_to_goal, ~/camera_frame and parameter services."""

    def __init__(self, node: Node, planner: str = PLANNER, wait: Wait | None = None) -> None:
        self.node = node
        self.planner = "/" + planner.strip("/")
        self.wait = wait or spin_wait(node)
        self.action = ActionClient(node, ReachGoal, f"{self.planner}/reach_goal")
        self._services: dict[str, Any] = {}

    def wait_for_planner(self, timeout: float) -> None:
        """Return once the node's action server is discovered; GoalError naming the node if it does not appear."""
        try:
            self.wait(self.action.server_is_ready, timeout, f"{self.planner}/reach_goal")
        except GoalError:
            raise NoPlanner(
                f"no planner node at {self.planner}: its action {self.planner}/reach_goal did not appear within "
                f"{timeout:g} s (is vjepa2_planner running, in this ROS_DOMAIN_ID?)"
            ) from None

    def reach(
        self,
        goal: Any,
        on_feedback: Callable[[Any], None] | None = None,
        timeout: float = math.inf,
        interrupted: Callable[[], bool] = lambda: False,
    ) -> ReachOutcome:
        """Send `goal` (ReachGoal.Goal) and wait for its result. Once `interrupted()` holds, the goal is cancelled
        and the node's own result (normally `canceled`) is awaited, so nothing is left moving behind the caller."""
        send = self.action.send_goal_async(goal, feedback_callback=on_feedback)
        self.wait(send.done, ANSWER_TIMEOUT, "the planner to accept the goal")
        handle = send.result()
        if not handle.accepted:
            raise GoalError("the planner rejected the goal (another goal is active, or the node is not active)")
        result = handle.get_result_async()
        self.wait(lambda: result.done() or interrupted(), timeout, "the ReachGoal result")
        cancelled = not result.done()
        if cancelled:
            cancel = handle.cancel_goal_async()
            self.wait(cancel.done, ANSWER_TIMEOUT, "the planner to answer the cancel request")
            self.wait(result.done, ANSWER_TIMEOUT, "the planner to confirm the cancel")
        response = result.result()
        return ReachOutcome(status_name(response.status), response.result, cancelled)

    def plan(self, request: Any, timeout: float, answer_timeout: float = 600.0) -> Any:
        """One ~/plan_to_goal call (PlanToGoal.Request): the node must appear within `timeout`, the plan within
        `answer_timeout`; the response, successful or not."""
        return self._call(PlanToGoal, "plan_to_goal", request, timeout, answer_timeout)

    def camera_frame(self, timeout: float) -> Any:
        """The node's latest camera frame (CameraFrame.Response)."""
        return self._call(CameraFrame, "camera_frame", CameraFrame.Request(), timeout)

    def set_budget(self, budget: dict[str, int], timeout: float) -> dict[str, int]:
        """Set the node's cem.{samples,iterations,horizon} (0 = keep; cem.topk follows a smaller sample count, as for
        a plan_to_goal budget) in one atomic change; returns the previous values for `restore_budget`."""
        from dataclasses import replace

        from vjepa2_core.planning.cem import CEMConfig
        from vjepa2_core.planning.controller import budget_config

        names = [f"cem.{name}" for name in ("horizon", "samples", "iterations", "topk")]
        current = self._get_parameters(names, timeout)
        now = replace(CEMConfig(), **{name[4:]: value for name, value in current.items()})
        wanted = budget_config(now, **budget)
        self._set_parameters({name: getattr(wanted, name[4:]) for name in names}, timeout)
        return current

    def restore_budget(self, previous: dict[str, int], timeout: float) -> None:
        self._set_parameters(previous, timeout)

    def close(self) -> None:
        self.action.destroy()
        for client in self._services.values():
            self.node.destroy_client(client)
        self._services.clear()

    # -- services

    def _call(
        self, srv_type: Any, name: str, request: Any, timeout: float, answer_timeout: float | None = None
    ) -> Any:
        full = f"{self.planner}/{name}"
        client = self._services.get(full)
        if client is None:
            client = self._services[full] = self.node.create_client(srv_type, full)
        try:
            self.wait(client.service_is_ready, timeout, full)
        except GoalError:
            raise NoPlanner(
                f"no planner node at {self.planner}: its service {full} did not appear within {timeout:g} s "
                "(is vjepa2_planner running, in this ROS_DOMAIN_ID?)"
            ) from None
        future = client.call_async(request)
        self.wait(future.done, answer_timeout or timeout, f"{full} to answer")
        return future.result()

    def _get_parameters(self, names: list[str], timeout: float) -> dict[str, int]:
        from rcl_interfaces.srv import GetParameters

        response = self._call(GetParameters, "get_parameters", GetParameters.Request(names=names), timeout)
        return {name: int(value.integer_value) for name, value in zip(names, response.values)}

    def _set_parameters(self, values: dict[str, int], timeout: float) -> None:
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParametersAtomically

        params = [
            Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=int(v)))
            for name, v in values.items()
        ]
        request = SetParametersAtomically.Request(parameters=params)
        response = self._call(SetParametersAtomically, "set_parameters_atomically", request, timeout)
        if not response.result.successful:
            raise GoalError(f"the planner refused the budget {values}: {response.result.reason}")
