"""Shared test fixtures: paths to ../shared and an isolated ROS 2 domain per test session."""

from __future__ import annotations

import os
import random
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


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    assert FIXTURES.is_dir(), f"reference fixtures not found at {FIXTURES} (set VJEPA2_SHARED)"
    return FIXTURES


@pytest.fixture(scope="session")
def franka_npz() -> Path:
    assert FRANKA_NPZ.is_file(), f"{FRANKA_NPZ} not found (set VJEPA2_SHARED)"
    return FRANKA_NPZ
