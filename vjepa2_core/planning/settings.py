"""The planner's settings as flat `section.field` parameters, derived from the core config dataclasses.

`CEMConfig` (section `cem`), `SafetyLimits` (`safety`) and `ControllerConfig` (no prefix) hold every default once.
`parameter_table()` turns their fields into the flat names, default values and descriptions the ROS node declares;
`settings_from_values()` turns such values (from ROS parameters or a params YAML) back into validated dataclasses.
So the node, `vjepa2-sim-eval` and the YAML files in `config/` cannot drift apart: a YAML lists only what differs.

ROS parameters have no None and no dict, so three encodings are used: an optional int is -1 for None
(`cem.seed`, `cem.close_gripper`); `cem.axis` is a string `"gripper=0.0,z=0.1"`; tuples are float lists. The CEM
search box (`CEMConfig.workspace`) is not a parameter: it is the safety workspace, so plans stay inside the box the
limiter enforces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from vjepa2_core.planning.config import CEMConfig
from vjepa2_core.planning.controller import ControllerConfig
from vjepa2_core.planning.planners import check_planner_options
from vjepa2_core.planning.safety import SafetyLimits

SECTIONS: dict[str, type] = {"cem": CEMConfig, "safety": SafetyLimits, "": ControllerConfig}
DERIVED = {"cem.workspace": "the CEM search box is the safety workspace (safety.workspace_min/max)"}

DESCRIPTIONS: dict[str, str] = {
    "cem.planner": "search algorithm (vjepa2_core.planning.planners.PLANNERS)",
    "cem.horizon": "planning horizon (steps)",
    "cem.samples": "candidate action sequences per iteration",
    "cem.topk": "elites refitted per iteration (2 <= topk <= samples)",
    "cem.iterations": "search iterations",
    "cem.momentum_mean": "mean momentum, xyz (0..1: weight of the previous mean)",
    "cem.momentum_std": "std momentum, xyz (0..1: weight of the previous std)",
    "cem.momentum_mean_gripper": "mean momentum, gripper",
    "cem.momentum_std_gripper": "std momentum, gripper",
    "cem.maxnorm": "per-axis bound of a planned xyz move (metres); a longer move is executed one safe step at a time",
    "cem.gripper_max": "bound of a planned gripper change",
    "cem.gripper_init_std": "initial std of gripper changes",
    "cem.gripper_round": "planned gripper changes below this magnitude become 0",
    "cem.axis": "pinned action axes, e.g. 'gripper=0.0' (reach-only tasks, arms without a gripper); '' = none",
    "cem.close_gripper": "from this plan step on the gripper is commanded closed; -1 = never",
    "cem.energy": "energy between predicted and goal features (l1, l2, cosine, ...)",
    "cem.energy_frames": "which predicted frames the energy scores (last or all)",
    "cem.seed": "search seed; -1 = a fresh random seed per plan",
    "cem.cached": "incremental K/V-cached rollouts (same result, faster)",
    "cem.rotation": "also plan rotation deltas",
    "cem.rot_maxnorm": "per-axis bound of planned rotation deltas (radians)",
    "cem.warm_start": "start each closed-loop plan from the previous plan, shifted by one step",
    "cem.elite_reuse": "fraction of elites kept into the next iteration (iCEM)",
    "cem.population_decay": "per-iteration factor on the number of samples (iCEM); 1 = constant",
    "cem.time_budget_s": "> 0: seconds a search may take (anytime: an iteration starts only if it should end in time)",
    "cem.icem_noise_beta": "iCEM: coloured sampling noise over the horizon, power spectrum 1/f^beta",
    "cem.icem_elite_fraction": "iCEM: fraction of the elites kept into the next iteration",
    "cem.icem_population_decay": "iCEM: fresh samples shrink by this factor per iteration",
    "cem.mppi_temperature": "MPPI: softmax temperature in units of the iteration's energy std",
    "cem.grad_lr": "gradient planners: Adam step size as a fraction of each action bound",
    "cem.grad_restarts": "gradient planner: parallel starts (the initial mean and random draws around it)",
    "cem.grad_steps": "cem_grad planner: Adam steps on the CEM plan after the search",
    "safety.max_translation": "metres per command (norm of dx dy dz, direction kept)",
    "safety.max_rotation": "radians per command, per euler axis",
    "safety.max_gripper_step": "gripper closedness change per command",
    "safety.workspace_min": "workspace box minimum x y z (metres); no command target leaves the box",
    "safety.workspace_max": "workspace box maximum x y z (metres)",
    "safety.stale_timeout": "seconds after which camera or state counts as stale (no commands)",
    "safety.plan_deadline": "seconds a plan may take; a slower search is cancelled and its plan discarded",
    "hold_margin": "hold still unless the plan is predicted to beat standing still by this energy; < 0 = off",
    "energy_threshold": "goal reached when the current image's energy to the goal is <= this; <= 0 = off",
    "max_steps": "default ReachGoal step limit",
    "subgoal_threshold": "move on to the next sub-goal when the current energy to it is <= this; <= 0 = off",
    "subgoal_steps": "move on to the next sub-goal after this many steps on it; 0 = no limit",
}


def _ros_default(value: Any) -> Any:
    if value is None:
        return -1
    if isinstance(value, dict):
        return format_axis(value)
    if isinstance(value, tuple):
        return [float(v) for v in value]
    return value


def _config_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in fields(cls) if f.init]


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def parameter_table() -> dict[str, tuple[Any, str]]:
    """Every settable field as `name -> (ROS default value, description)`, in declaration order."""
    table = {}
    for prefix, cls in SECTIONS.items():
        for f in _config_fields(cls):
            name = f"{prefix}.{f.name}" if prefix else f.name
            if name not in DERIVED:
                table[name] = (_ros_default(_default(f)), DESCRIPTIONS.get(name, f.name.replace("_", " ")))
    return table


def format_axis(axis: Mapping[int | str, float]) -> str:
    return ",".join(f"{k}={float(v):g}" for k, v in axis.items())


def parse_axis(text: str) -> dict[str | int, float]:
    """'gripper=0, z=0.1' -> {'gripper': 0.0, 'z': 0.1}; integer keys are the reference's 4-D indices."""
    axis: dict[str | int, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or number is None:
            raise ValueError(f"cem.axis entries look like 'gripper=0.0', got {item!r}")
        key = key.strip()
        axis[int(key) if key.lstrip("-").isdigit() else key] = number
    return axis


@dataclass(frozen=True)
class PlanningSettings:
    """What a closed loop needs besides the model: the search, the safety limits and the loop's rules."""

    cem: CEMConfig
    limits: SafetyLimits
    rules: ControllerConfig


def _from_ros(cls: type, name: str, value: Any, default: Any) -> Any:
    if name == "cem.axis":
        return parse_axis(value)
    if default is None:
        return None if value == -1 else value
    if isinstance(default, tuple):
        return tuple(float(v) for v in value)
    return value


def settings_from_values(values: Mapping[str, Any]) -> PlanningSettings:
    """Validated dataclasses from flat values (missing names take the dataclass default). Raises ValueError."""
    unknown = sorted(set(values) - set(parameter_table()))
    if unknown:
        raise ValueError(f"unknown planner setting(s) {unknown}")
    built = {}
    for prefix, cls in SECTIONS.items():
        kwargs = {}
        for f in _config_fields(cls):
            name = f"{prefix}.{f.name}" if prefix else f.name
            if name in values:
                kwargs[f.name] = _from_ros(cls, name, values[name], _default(f))
        built[prefix] = cls(**kwargs)
    return planning_settings(built["cem"], built["safety"], built[""])


def planning_settings(cem: CEMConfig, limits: SafetyLimits, rules: ControllerConfig) -> PlanningSettings:
    """Validated settings with the CEM search box set to the safety workspace (plans stay where commands may go)."""
    cem = dataclasses.replace(cem, workspace=(tuple(limits.workspace_min), tuple(limits.workspace_max)))
    check_planner_options(cem)
    rules.validate()
    return PlanningSettings(cem=cem, limits=limits, rules=rules)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested YAML mapping -> `a.b.c` keys (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out.update(flatten(value, f"{name}.") if isinstance(value, Mapping) else {name: value})
    return out


def read_params_file(path: str | Path, node: str = "/**") -> dict[str, Any]:
    """The flat `ros__parameters` of `node` in a ROS 2 params YAML (what `--params-file` gives the node)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    try:
        params = data[node]["ros__parameters"]
    except (KeyError, TypeError):
        raise ValueError(f"{path} has no '{node}: ros__parameters:' section") from None
    return flatten(params)


def planning_values(params: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of flat node parameters that are planner settings (model/topic parameters are the node's)."""
    table = parameter_table()
    return {k: v for k, v in params.items() if k in table}
