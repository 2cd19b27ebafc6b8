"""Where the simulator tools find the shipped models and the node params files (source tree or installed share);
which task uses which is `vjepa2_ros.sim.tasks`."""

from __future__ import annotations

import sys
from pathlib import Path

SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "models" / "sim_reach.safetensors"
SHIPPED_PUSH_MODEL = SHIPPED_MODEL.with_name("sim_push.safetensors")
REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"
SIM_PLANNER_PARAMS = REPO_CONFIG / "sim_planner.yaml"
SIM_PUSH_PLANNER_PARAMS = REPO_CONFIG / "sim_push_planner.yaml"  # push: the planar pusher's workspace, sub-goal rules
SHIPPED_PICK_MODEL = SHIPPED_MODEL.with_name("sim_pick_and_place.safetensors")
SIM_PICK_PLANNER_PARAMS = REPO_CONFIG / "sim_pick_planner.yaml"  # pick_and_place: 3-D workspace, gripper planned


class ConfigFileError(RuntimeError):
    """A params file that is in neither the given place, the source tree nor the installed share directory."""


def config_file(path: str | Path) -> Path:
    """A file by path, else config/<name> from the source tree, else from the installed share directory."""
    name = Path(path).name
    share = Path(sys.prefix) / "share" / "vjepa2_ros" / "config"
    for candidate in (Path(path), REPO_CONFIG / name, share / name):
        if candidate.is_file():
            return candidate
    raise ConfigFileError(f"{path} not found (nor {name} in {REPO_CONFIG} or {share})")
