"""The closed-loop controller: one step from the current image and state to a safe command toward a goal image.

This is the only closed loop in the project. The planner node's ReachGoal, `vjepa2-sim-eval` and the planned-vs-
recorded part of `vjepa2-replay` all call `ClosedLoopController.step`, so the success rate we measure is the
controller the node runs. A step: encode the image, move on along the sub-goal images if the current one is
reached, stop when the final goal is reached, plan (warm-started from the previous plan when `cem.warm_start`),
reject a non-finite or late plan, hold still when nothing beats standing still (the hold rule), and turn the plan's
first move, which may span several control steps, into one bounded command inside the workspace box
(`safety.limit_action`: the direction is kept, the length cut to `max_translation`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from vjepa2_core.planning import safety
from vjepa2_core.planning.cem import ACTION_DIM, CEMConfig, PlanResult
from vjepa2_core.planning.energies import trajectory_energy
from vjepa2_core.planning.hold import decide_hold
from vjepa2_core.planning.safety import SafetyLimits

MOVE, HOLD, GOAL_REACHED, BLOCKED = "move", "hold", "goal_reached", "blocked"


@dataclass
class ControllerConfig:
    """The loop's rules around a plan (node parameters without a prefix; defaults: every rule off)."""

    hold_margin: float = -1.0
    energy_threshold: float = 0.0
    max_steps: int = 50
    subgoal_threshold: float = 0.0
    subgoal_steps: int = 0

    def validate(self) -> None:
        for name in ("hold_margin", "energy_threshold", "subgoal_threshold"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)!r}")
        if self.max_steps < 1 or self.subgoal_steps < 0:
            raise ValueError(f"need max_steps >= 1 and subgoal_steps >= 0, got {self.max_steps}, {self.subgoal_steps}")


@dataclass
class StepDecision:
    """What one closed-loop step decided. `action` is the command to send ([7] delta, zeros = hold), None if none."""

    status: str
    action: np.ndarray | None
    notes: list[str] = field(default_factory=list)
    plan: PlanResult | None = None
    energy_now: float = math.nan
    still_energy: float | None = None
    subgoal: int = 0
    plan_s: float = 0.0

    @property
    def energy(self) -> float:
        """The plan's predicted energy when there is a plan, else the current one."""
        return float(self.plan.energy) if self.plan is not None else self.energy_now


Budget = dict[str, int]


class SubgoalSwitch:
    """The sub-goal switching rule, written once: which of a sequence of goal images is the current one.

    Before each step the current image moves on past every sub-goal it has reached: its energy to the sub-goal is at
    or below `subgoal_threshold`, or `subgoal_steps` steps were spent on it (`advance`). After a step's decision, a
    plateau (holding still beats every move) on a sub-goal takes the next one (`plateau`). The final goal is never
    left. The controller and the true-simulator probe (`vjepa2_ros.sim.scene_probe`) both step through goals with it.
    """

    def __init__(self, n_goals: int, rules: ControllerConfig):
        if n_goals < 1:
            raise ValueError("need at least one goal image")
        self.n_goals, self.rules, self.index, self.steps_on_goal = n_goals, rules, 0, 0

    def is_final(self) -> bool:
        return self.index == self.n_goals - 1

    def next(self) -> None:
        self.index, self.steps_on_goal = self.index + 1, 0

    def advance(self, energy_to: Callable[[int], float]) -> float:
        """Move past every reached sub-goal; `energy_to(i)` is the current energy to goal i. Returns the energy to
        the current goal."""
        now = energy_to(self.index)
        while not self.is_final():
            by_energy = self.rules.subgoal_threshold > 0 and now <= self.rules.subgoal_threshold
            by_steps = self.rules.subgoal_steps > 0 and self.steps_on_goal >= self.rules.subgoal_steps
            if not (by_energy or by_steps):
                break
            self.next()
            now = energy_to(self.index)
        return now

    def plateau(self) -> bool:
        """Nothing gets closer to the current goal: take the next one unless it is the final goal; True if taken."""
        if self.is_final():
            return False
        self.next()
        return True

    def stepped(self) -> None:
        self.steps_on_goal += 1


def budget_config(cem: CEMConfig, horizon: int = 0, samples: int = 0, iterations: int = 0) -> CEMConfig:
    """`cem` with a per-request budget (0 = keep the configured value); topk follows a smaller sample count."""
    samples = samples or cem.samples
    return replace(
        cem,
        horizon=horizon or cem.horizon,
        samples=samples,
        iterations=iterations or cem.iterations,
        topk=max(2, min(cem.topk, samples)),
    )


class ClosedLoopController:
    """Owns the world model's planning for one robot: one-shot plans and the closed-loop steps of an episode."""

    def __init__(self, world_model: Any, cem: CEMConfig, limits: SafetyLimits, rules: ControllerConfig | None = None):
        from vjepa2_core.planning.planners import make_planner

        self.world_model, self.limits = world_model, limits
        self.rules = rules if rules is not None else ControllerConfig()
        self.rules.validate()
        self.cem = cem
        self._make_planner = make_planner
        self.planner = make_planner(world_model, cem)
        self.goals: list[torch.Tensor] = []
        self.reset()

    def reconfigure(
        self, cem: CEMConfig | None = None, limits: SafetyLimits | None = None, rules: ControllerConfig | None = None
    ) -> None:
        """New settings from the next plan or step on (a node's live parameters; None keeps one). A running episode
        keeps its own rules (`reset`); a changed `cem` builds a new planner. Invalid settings raise ValueError and
        change nothing."""
        if rules is not None:
            rules.validate()
        changed = cem is not None and cem != self.cem
        planner = self._make_planner(self.world_model, cem) if changed else self.planner  # may raise: nothing set yet
        self.rules = rules if rules is not None else self.rules
        self.limits = limits if limits is not None else self.limits
        if changed:
            self.cem, self.planner = cem, planner

    # -- one-shot planning (the node's ~/plan_to_goal, benches)

    @torch.inference_mode()
    def plan(
        self,
        image: np.ndarray,
        state: np.ndarray,
        goal_image: np.ndarray,
        budget: Budget | None = None,
        seed: int | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> PlanResult:
        """One plan from the current image/state toward `goal_image`, no closed-loop rules; budget 0 = default."""
        cem = budget_config(self.cem, **(budget or {}))
        planner = self.planner if cem == self.cem else self._make_planner(self.world_model, cem)
        state_t = torch.as_tensor(np.asarray(state, np.float32))
        return planner.plan_images(image, state_t, goal_image, seed=seed, should_stop=should_stop)

    # -- the closed loop

    def reset(self, rules: ControllerConfig | None = None) -> None:
        """Forget the episode (goals, warm start, step counters); `rules` replace the configured ones for it."""
        self.goals, self.steps = [], 0
        self.last_plan: PlanResult | None = None
        self.episode_rules = rules if rules is not None else self.rules
        self.episode_rules.validate()
        self.switch = SubgoalSwitch(1, self.episode_rules)

    @property
    def subgoal(self) -> int:
        """Index of the goal being planned for (0 .. len(goals) - 1)."""
        return self.switch.index

    @torch.inference_mode()
    def start(self, goal_images: np.ndarray | Sequence[np.ndarray], rules: ControllerConfig | None = None) -> None:
        """A new episode toward one goal image, or a sequence of sub-goal images ending with the goal."""
        images = [goal_images] if isinstance(goal_images, np.ndarray) and goal_images.ndim == 3 else list(goal_images)
        if not images:
            raise ValueError("need at least one goal image")
        self.start_reps([self.world_model.encode_goal(img) for img in images], rules)

    def start_reps(self, goal_reps: Sequence[torch.Tensor], rules: ControllerConfig | None = None) -> None:
        """As `start`, from encoded goals (replay, where the goal is a recorded frame's representation)."""
        self.reset(rules)
        self.goals = list(goal_reps)
        self.switch = SubgoalSwitch(len(self.goals), self.episode_rules)

    @torch.inference_mode()
    def step(
        self,
        image: np.ndarray,
        state: np.ndarray,
        seed: int | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> StepDecision:
        """One closed-loop step from the current camera image and state [7] (x y z roll pitch yaw gripper)."""
        start = time.perf_counter()
        rep = self.world_model.encode(image)
        decision = self.step_rep(rep, state, seed=seed, should_stop=should_stop)
        decision.plan_s = time.perf_counter() - start
        return decision

    @torch.inference_mode()
    def step_rep(
        self,
        rep: torch.Tensor,
        state: np.ndarray,
        seed: int | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> StepDecision:
        """`step` from the current image's representation [N,D] or [1,N,D]."""
        if not self.goals:
            raise RuntimeError("call start(goal_images) before step()")
        state = np.asarray(state, np.float64).reshape(-1)
        if state.shape != (ACTION_DIM,) or not safety.all_finite(state):
            return StepDecision(BLOCKED, None, [safety.NON_FINITE_INPUT], subgoal=self.subgoal)
        rep = rep if rep.ndim == 3 else rep[None]
        now = self._advance_subgoals(rep)
        threshold = self.episode_rules.energy_threshold
        if self._is_final() and 0 < threshold and now <= threshold:
            return StepDecision(GOAL_REACHED, None, ["goal_reached"], energy_now=now, subgoal=self.subgoal)
        state_t = torch.as_tensor(state, dtype=torch.float32)
        warm = self.last_plan if self.cem.warm_start else None
        goal = self.goals[self.subgoal]
        plan = self.planner.plan(rep, state_t, goal, seed=seed, warm_start=warm, should_stop=should_stop)
        actions = plan.actions.detach().cpu().double().numpy()
        reasons = safety.check_plan(actions, plan.energy, plan.wall_time, self.limits)
        if reasons:
            return StepDecision(BLOCKED, None, reasons, plan=plan, energy_now=now, subgoal=self.subgoal)
        self.last_plan = plan
        decision = StepDecision(MOVE, None, [], plan=plan, energy_now=now, subgoal=self.subgoal)
        margin = self.episode_rules.hold_margin
        if margin >= 0:
            hold = decide_hold(self.world_model, rep, state_t, self.goals[self.subgoal], plan, self.cem, margin)
            decision.still_energy = hold.still_energy
            if hold.hold:
                decision.status, decision.action, decision.notes = HOLD, np.zeros(ACTION_DIM), ["hold"]
                if self.switch.plateau():  # a plateau: nothing gets closer to this sub-goal, so take the next
                    self.last_plan = None
                    decision.notes.append("next_subgoal")
        if decision.action is None:
            decision.action, decision.notes = safety.limit_action(state, actions[0], self.limits)
        self.steps += 1
        self.switch.stepped()
        return decision

    # -- sub-goals

    def current_energy(self, rep: torch.Tensor, goal: int | None = None) -> float:
        """The planner's energy between the current representation and goal `goal` (default: the current one)."""
        target = self.goals[self.subgoal if goal is None else goal]
        return float(trajectory_energy(rep[:, None], target, self.cem.energy, self.cem.energy_frames)[0])

    def _is_final(self) -> bool:
        return self.switch.is_final()

    def _advance_subgoals(self, rep: torch.Tensor) -> float:
        """Move past every reached sub-goal (the switch's energy or step rule); returns the energy to the current
        goal. A new sub-goal drops the warm start (it was planned for the previous one)."""
        before = self.switch.index
        now = self.switch.advance(lambda goal: self.current_energy(rep, goal))
        if self.switch.index != before:
            self.last_plan = None
        return now
