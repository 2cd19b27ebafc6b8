"""The planner node's ReachGoal episode: the closed loop over ROS, as a loop of steps that ends in (status, message).

Each step waits for inputs newer than the last command, asks the controller for a decision on the plan worker,
waits out the control period and sends the command through the gate. The episode never touches the goal handle's
status: `run` returns how it ended (succeed, abort, canceled, the goal handle's method names) and the node ends the
goal in one place. Any stop for safety is one `safety_stop`: feedback with the reasons, then abort with them.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from vjepa2_core.planning.controller import GOAL_REACHED, ControllerConfig, StepDecision
from vjepa2_core.planning.gate import GOAL_ENDED, INACTIVE
from vjepa2_core.planning.inputs import Observation
from vjepa2_ros import conversions as conv
from vjepa2_ros.planner_commands import Command

if TYPE_CHECKING:
    from vjepa2_ros.planner_node import PlannerNode

SUCCEED, ABORT, CANCELED = "succeed", "abort", "canceled"  # how an episode ends: the goal handle's methods
MAX_SUBGOALS = 64  # sub-goal images per ReachGoal (each is decoded, encoded and kept for the episode); the sim
# push oracle gives one a step, up to 40
Outcome = tuple[str, str]  # (status, message)


def episode_request(node: PlannerNode, req: Any) -> tuple[list[np.ndarray], int, ControllerConfig]:
    """A ReachGoal's images (sub-goals, then the goal), step limit and rules; raises ValueError on bad input."""
    goal = node.resolve_goal(req.goal_image)
    if len(req.subgoal_images) > MAX_SUBGOALS:
        raise ValueError(f"at most {MAX_SUBGOALS} sub-goal images, got {len(req.subgoal_images)}")
    goals = [conv.image_to_rgb(msg) for msg in req.subgoal_images] + [goal]
    rules = node.settings.rules
    max_steps = req.max_steps if req.max_steps > 0 else rules.max_steps
    threshold = req.energy_threshold if req.energy_threshold > 0 else rules.energy_threshold
    return goals, max_steps, replace(rules, energy_threshold=threshold)


class ReachEpisode:
    """One ReachGoal: an episode of the gate (stop, deactivate or a newer goal ends it) on the controller that is
    configured when it starts (cleanup cannot take it away mid-goal)."""

    def __init__(self, node: PlannerNode, goal_handle: Any, feedback_type: type) -> None:
        self.node, self.goal_handle, self.feedback_type = node, goal_handle, feedback_type
        self.controller = node.controller
        self.episode = node.gate.begin()
        self.steps, self.final_energy = 0, math.nan
        self.last_command = -math.inf

    def run(self) -> Outcome:
        """Start the episode and step it until it ends; returns (status, message)."""
        if self.controller is None:
            return ABORT, f"{INACTIVE}: not configured"
        try:
            goals, max_steps, rules = episode_request(self.node, self.goal_handle.request)
        except ValueError as exc:  # ImageDecodeError is a ValueError
            return ABORT, str(exc)
        controller = self.controller
        _, reasons, _ = self.node.run_plan(lambda should_stop: controller.start(goals, rules=rules), self.over)
        if reasons:
            return ABORT, "could not encode the goal image: " + ", ".join(reasons)
        while True:
            outcome = self.step(goals[-1], max_steps, rules.energy_threshold)
            if outcome is not None:
                return outcome

    def over(self) -> str:
        """Why the episode is over ('' while it runs): cancelled, or ended by the gate."""
        return CANCELED if self.goal_handle.is_cancel_requested else self.node.gate.ended(self.episode)

    def step(self, goal: np.ndarray, max_steps: int, threshold: float) -> Outcome | None:
        """One closed-loop step: None when its command went out, else how the episode ends."""
        ended = self.over()
        if ended == CANCELED:
            return CANCELED, "canceled"
        if self.steps >= max_steps:
            return (SUCCEED if threshold <= 0 else ABORT), f"max_steps {max_steps} reached"
        obs, reasons = self.inputs(ended)
        if reasons:
            return self.safety_stop(self.final_energy, reasons)
        state, controller = obs.state(), self.controller
        decision, reasons, elapsed = self.node.run_plan(
            lambda should_stop: controller.step(obs.image, state, should_stop=should_stop), self.over
        )
        if reasons == [CANCELED]:
            return CANCELED, "canceled"
        if decision is None or decision.action is None:
            return self.no_command(decision, reasons, threshold)
        self.node.record_plan(decision.plan, elapsed, controller.world_model)
        self.final_energy = decision.energy
        actions = decision.plan.actions.detach().cpu().double().numpy()
        self.node.views.publish(obs.image, goal, state, actions, decision.energy, obs.frame_id)
        return self.send(decision, Command(self.episode, self.over, state, decision.action, obs.frame_id))

    def inputs(self, ended: str) -> tuple[Observation, list[str]]:
        """The inputs to plan from, after waiting for ones newer than the last command; and any reason to stop."""
        missing = [ended] if ended else []
        if self.steps and not missing:
            gate, episode = self.node.gate, self.episode
            timeout = self.node.settings.limits.stale_timeout
            missing = self.node.inputs.wait_fresh(self.last_command, timeout, lambda: gate.ended(episode))
        obs, reasons = self.node.assess()
        return obs, missing or reasons

    def no_command(self, decision: StepDecision | None, reasons: list[str], threshold: float) -> Outcome:
        """A step that decided no command: the goal is reached, or the reasons stop the episode."""
        energy = self.final_energy if decision is None else decision.energy
        reasons = reasons or decision.notes
        if decision is None or decision.status != GOAL_REACHED:
            return self.safety_stop(energy, reasons)
        self.feedback(energy, reasons)
        self.final_energy = energy
        return SUCCEED, f"energy {energy:.4f} <= {threshold}"

    def send(self, decision: StepDecision, command: Command) -> Outcome | None:
        """Wait out the control period (or until stop/deactivate ends the goal), then send through the gate."""
        wait = self.last_command + 1.0 / self.node.settings.control_rate - time.monotonic()
        self.node.gate.wait_ended(self.episode, wait)
        sent = self.node.commands.send(command)
        if not sent.allowed:  # stopped, deactivated, cancelled, inputs stale, ... while planning or waiting
            if sent.reasons == [GOAL_ENDED] and self.goal_handle.is_cancel_requested:
                return CANCELED, "canceled"
            return self.safety_stop(decision.energy, sent.reasons)
        self.last_command = time.monotonic()
        self.steps += 1
        notes = decision.notes + [n for n in sent.notes if n not in decision.notes]
        self.node.stats.stepped(notes)
        self.feedback(decision.energy, notes, sent.action)
        return None

    def safety_stop(self, energy: float, reasons: list[str]) -> Outcome:
        """Stop for `reasons`: they go out as the last feedback, and the goal aborts with them."""
        self.feedback(energy, reasons)
        return ABORT, self.node.safety_stop(reasons)

    def feedback(self, energy: float, notes: list[str], action=()) -> None:
        fb = self.feedback_type(step=self.steps, energy=float(energy), status=",".join(notes))
        fb.action, fb.subgoal = [float(a) for a in action], self.controller.subgoal
        self.goal_handle.publish_feedback(fb)
