"""The replay tool's YAML config: model, CEM settings, topics, control rate and rollout horizon K."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vjepa2_core.planning.cem import CEMConfig
from vjepa2_core.planning.controller import ControllerConfig
from vjepa2_core.planning.safety import SafetyLimits
from vjepa2_core.planning.settings import PlanningSettings, planning_settings
from vjepa2_ros.bags.writer import Topics


@dataclass
class ModelConfig:
    """`kind: ac` loads a project checkpoint (load_ac_model); `kind: toy` uses the exact toy world model."""

    kind: str = "ac"
    checkpoint: str | None = None
    crop_size: int | None = None  # None: the checkpoint's img_size
    device: str = "cpu"
    toy_tokens: int = 16
    toy_dim: int = 8
    toy_seed: int = 0


@dataclass
class ReplayConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    cem: CEMConfig = field(default_factory=CEMConfig)
    safety: SafetyLimits = field(default_factory=SafetyLimits)  # the planned command is limited as the node does
    rules: ControllerConfig = field(default_factory=ControllerConfig)
    topics: Topics = field(default_factory=Topics)
    rate: float = 4.0  # control rate of the model (Hz), the alignment grid
    tolerance: float = 0.05  # s, max distance of a sample from its grid time
    stamps: str = "receive"  # 'receive' (bag time) or 'header'
    horizon: int = 3  # K: open-loop rollout length
    goal_offsets: list[int] = field(default_factory=lambda: [1])  # plan toward the frame at t + k
    plan: bool = True
    stride: int = 1  # evaluate every n-th grid step
    max_steps: int | None = None
    batch_size: int = 8  # frames encoded per forward pass
    seed: int = 0

    def validate(self) -> None:
        if self.model.kind not in ("ac", "toy"):
            raise ValueError(f"model.kind must be 'ac' or 'toy', got {self.model.kind!r}")
        if self.model.kind == "ac" and not self.model.checkpoint:
            raise ValueError("model.checkpoint is required for model.kind 'ac'")
        if self.horizon < 1 or self.stride < 1 or self.batch_size < 1 or self.rate <= 0 or self.tolerance < 0:
            raise ValueError("horizon, stride and batch_size must be >= 1, rate > 0 and tolerance >= 0")
        if not self.goal_offsets or min(self.goal_offsets) < 1:
            raise ValueError(f"goal_offsets must be a non-empty list of ints >= 1, got {self.goal_offsets}")
        if self.stamps not in ("receive", "header"):
            raise ValueError(f"stamps must be 'receive' or 'header', got {self.stamps!r}")
        self.planning()

    def planning(self) -> PlanningSettings:
        """The closed-loop controller's settings (the planner node's: CEM box = safety workspace)."""
        return planning_settings(self.cem, self.safety, self.rules)


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    """Dataclass from a dict, rejecting unknown keys by name (a typo must not be silently ignored)."""
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; allowed: {sorted(names)}")
    return cls(**values)


def load_config(path: str | Path | None, **overrides: Any) -> ReplayConfig:
    """Read the YAML (None = defaults) and apply non-None command-line overrides (`topics.image=...` style keys)."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file {path} not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"config {path} is not valid YAML: {err}") from err
        if not isinstance(raw, dict):
            raise ValueError(f"config {path} must be a mapping at the top level")
    for key, value in overrides.items():
        if value is None:
            continue
        section, _, name = key.rpartition(".")
        (raw.setdefault(section, {}) if section else raw)[name] = value
    nested = {
        "model": ModelConfig,
        "cem": CEMConfig,
        "safety": SafetyLimits,
        "rules": ControllerConfig,
        "topics": Topics,
    }
    kwargs = {k: _build(nested[k], v, k) if k in nested else v for k, v in raw.items()}
    cfg = _build(ReplayConfig, kwargs, "config")
    cfg.validate()
    return cfg
