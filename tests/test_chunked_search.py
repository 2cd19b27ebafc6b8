"""The search rolls its samples out in chunks sized from a memory limit: same plan, and the peak stays under it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vjepa2_core.planning import CEMConfig, WorldModel
from vjepa2_core.planning.budget import rollout_bytes_per_sample
from vjepa2_core.planning.planners import PLANNERS

SAMPLERS = ["cem", "icem", "mppi"]  # the planners that score a population through `Planner._energy`


@pytest.fixture(scope="module")
def scene():
    wm = WorldModel.random("vit_ac_tiny", seed=0)
    rng = np.random.default_rng(0)
    current, goal = (wm.encode(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(2))
    return wm, current, goal


def _limit_for(wm: WorldModel, horizon: int, samples: int) -> int:
    """A memory limit that lets about `samples` samples roll out at once."""
    return rollout_bytes_per_sample(wm, horizon) * samples + 2**16


@pytest.mark.parametrize("name", ["cem", "icem"])
def test_chunked_search_finds_the_same_plan(scene, name):
    wm, current, goal = scene
    cfg = CEMConfig(planner=name, horizon=2, samples=60, topk=5, iterations=3)
    whole = PLANNERS[name](wm, cfg, memory_limit=2**40)
    chunked = PLANNERS[name](wm, cfg, memory_limit=_limit_for(wm, 2, 13))
    a, b = whole.plan(current, torch.zeros(7), goal, seed=3), chunked.plan(current, torch.zeros(7), goal, seed=3)
    assert whole.chunk == 60 and chunked.chunk == 12  # five even chunks of at most 13
    # the same samples, the same elites: the plans agree (a chunk's GEMMs may round the last bit differently)
    assert torch.allclose(a.actions, b.actions, rtol=0, atol=1e-6), (a.actions, b.actions)
    assert np.allclose(a.energy_history, b.energy_history, rtol=1e-5, atol=0)
    assert a.samples_evaluated == b.samples_evaluated


@pytest.mark.parametrize("name", SAMPLERS)
def test_chunked_energies_equal_unchunked(scene, name):
    wm, current, goal = scene
    cfg = CEMConfig(planner=name, horizon=3, samples=50, topk=5, iterations=2, energy_frames="all")
    planner = PLANNERS[name](wm, cfg, memory_limit=_limit_for(wm, 3, 7))
    actions = (torch.rand(50, 3, 7, generator=torch.Generator().manual_seed(1)) - 0.5) * 0.1
    planner.chunk = 0  # all at once
    whole = planner._energy(current, torch.zeros(1, 7), goal, actions)
    planner.chunk = planner.rollout_chunk(50)
    assert planner.chunk == 7
    chunked = planner._energy(current, torch.zeros(1, 7), goal, actions)
    assert chunked.shape == (50,) and torch.allclose(whole, chunked, rtol=1e-5, atol=0)


MEASURE = """
import json, sys, numpy as np, torch
sys.path.insert(0, sys.argv[1])
from anon_peak import rss_anon, PeakAnon
torch.set_num_threads(1)
from vjepa2_core.planning import CEMConfig, CEMPlanner, WorldModel
from vjepa2_core.planning.budget import plan_cost
wm = WorldModel.random("vit_ac_tiny")
rep = wm.encode_goal(np.zeros((64, 64, 3), np.uint8))
horizon, samples = 6, 3000
config = CEMConfig(horizon=horizon, samples=samples, iterations=1, topk=4)
whole = plan_cost(wm, horizon, samples, 1).peak_bytes
limit = whole // 4
out = {"limit": limit, "whole_estimate": whole}
base = rss_anon()
for name, memory_limit in (("chunked", limit), ("whole", None)):  # chunked first: the peak only ever grows
    planner = CEMPlanner(wm, config, memory_limit=memory_limit if memory_limit else 2**40)
    with PeakAnon() as mem:
        planner.plan(rep, torch.zeros(7), rep, seed=0)
    out[name] = mem.peak - base
    out[name + "_chunk"] = planner.chunk
print(json.dumps(out))
"""


def test_a_chunked_search_stays_under_its_memory_limit():
    """Peak anonymous-memory growth of a real search (its own subprocess) under 1/4 of the unchunked estimate."""
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    m = json.loads(out.stdout.strip().splitlines()[-1])
    assert m["chunked_chunk"] < 3000 and m["whole_chunk"] == 3000, m
    assert m["chunked"] <= m["limit"], m  # what the limit promises
    assert m["whole"] > m["limit"], m  # and the same search unchunked would have broken it
