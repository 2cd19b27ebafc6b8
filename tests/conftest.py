"""Shared test fixtures: paths to ../shared and an isolated ROS 2 domain per test session."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VJEPA2_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures" / "vjepa2_reference"
FRANKA_NPZ = SHARED / "data" / "franka_example_traj.npz"

# Every test run gets its own DDS domain and localhost-only discovery so parallel runs never see each other.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 200)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def config_argv(config: str | Path, sets: Sequence[str] = (), *flags: str) -> list[str]:
    """`--config CONFIG --set k=v ... FLAGS`: the command line of a training or eval script."""
    argv = ["--config", str(config)]
    for item in sets:
        argv += ["--set", item]
    return [*argv, *flags]


def run_script(script: str, argv: Sequence[str], timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `script` (a path under the repository, e.g. training/train_ac.py) as a user does, output captured."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(REPO / script), *argv]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def script_summary(script: str, argv: Sequence[str], timeout: float = 900):
    """Run a script that must succeed; the JSON of its last stdout line (a training run's summary)."""
    proc = run_script(script, argv, timeout)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    assert FIXTURES.is_dir(), f"reference fixtures not found at {FIXTURES} (set VJEPA2_SHARED)"
    return FIXTURES


@pytest.fixture(scope="session")
def franka_npz() -> Path:
    assert FRANKA_NPZ.is_file(), f"{FRANKA_NPZ} not found (set VJEPA2_SHARED)"
    return FRANKA_NPZ


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random-weight `vit_ac_tiny` checkpoint on disk: the model of the ROS node tests."""
    from vjepa2_core.hub import make_random_checkpoint

    return make_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "vit_ac_tiny.pt", "vit_ac_tiny")


@pytest.fixture(scope="module")
def traj(franka_npz) -> dict:
    """The Franka example pair as the ROS tests send it (`ros_helpers.load_traj`: frames and float64 states)."""
    from ros_helpers import load_traj

    return load_traj(franka_npz)
