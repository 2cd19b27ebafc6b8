"""plan_cost: the memory estimate bounds a real plan's peak from above without being absurd; refusals say why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vjepa2_core.planning.budget import PlanCost, budget_refusal, plan_cost

MEASURE = """
import json, sys, numpy as np, torch
sys.path.insert(0, sys.argv[3])
from anon_peak import PeakAnon
torch.set_num_threads(1)
from vjepa2_core.planning import CEMConfig, CEMPlanner, WorldModel
from vjepa2_core.planning.budget import plan_cost
wm = WorldModel.random("vit_ac_tiny")
rep = wm.encode_goal(np.zeros((64, 64, 3), np.uint8))
horizon, samples = map(int, sys.argv[1:3])
planner = CEMPlanner(wm, CEMConfig(horizon=horizon, samples=samples, iterations=1, topk=4))
with PeakAnon() as mem:
    planner.plan(rep, torch.zeros(7), rep, seed=0)
print(json.dumps({"grown": mem.grown, "estimate": plan_cost(wm, horizon, samples, 1).peak_bytes}))
"""


def test_memory_estimate_bounds_a_real_plan():
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, "6", "1500", str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    m = json.loads(out.stdout.strip().splitlines()[-1])
    assert m["grown"] > 50 * 2**20, m  # the plan really used memory, so the comparison means something
    # an upper bound (what refusals rely on), within an order of magnitude (peak anonymous memory: tests/anon_peak.py)
    assert m["grown"] <= m["estimate"] <= 8 * m["grown"], m


def test_cost_grows_with_every_budget_field():
    from vjepa2_core.planning import WorldModel

    wm = WorldModel.random("vit_ac_tiny")
    base = plan_cost(wm, 2, 100, 3)
    for bigger in (plan_cost(wm, 4, 100, 3), plan_cost(wm, 2, 200, 3)):
        assert bigger.peak_bytes > base.peak_bytes and bigger.token_frames > base.token_frames
    more_iterations = plan_cost(wm, 2, 100, 6)
    assert more_iterations.peak_bytes == base.peak_bytes and more_iterations.token_frames == 2 * base.token_frames


@pytest.mark.parametrize(
    "cost, speed, expected",
    [
        (PlanCost(3 * 2**30, 10), None, "3.00 GiB per CEM iteration"),
        (PlanCost(2**20, 10**9), 1e-6, "about 1000.0 s at the measured speed"),
        (PlanCost(2**20, 10**6), 1e-6, None),
        (PlanCost(2**20, 10**9), None, None),  # no plan timed yet: only memory can refuse
    ],
)
def test_refusal_reasons(cost, speed, expected):
    reason = budget_refusal(cost, memory_limit=2**30, seconds_per_token_frame=speed, deadline=10.0)
    assert reason is None if expected is None else expected in reason


# -- the released ViT-g AC on a GPU, with the device's memory figures faked (the model is built weightless)

CONTEXT_BYTES = 600 * 2**20  # what the CUDA context itself takes of the card
BUDGETS = {"wrapper": (2, 400, 10), "paper": (1, 800, 10)}  # (horizon, samples, iterations)


def giant_on_gpu(precision: str):
    """The ViT-g AC world model (released shapes) as it sits on cuda:0, built on the meta device (no memory)."""
    from vjepa2_core.hub.loading import build_encoder_and_predictor
    from vjepa2_core.planning import WorldModel

    with torch.device("meta"):
        encoder, predictor = build_encoder_and_predictor("vit_ac_giant")
    wm = WorldModel(encoder, predictor, crop_size=256, device="meta", precision=precision)
    wm.device = torch.device("cuda", 0)  # where its tensors would live; only budget.py's device queries are faked
    return wm


def fake_card(monkeypatch, total: float, weights: int, cached: int = 0) -> None:
    """A card of `total` bytes holding `weights` bytes of tensors and `cached` bytes in the allocator's free pool
    (what a previous plan leaves reserved), as torch.cuda reports it."""
    reserved = weights + cached
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(total - CONTEXT_BYTES - reserved), total))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: reserved)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: weights)


def weight_bytes(wm) -> int:
    return sum(p.numel() * p.element_size() for m in (wm.encoder, wm.predictor) for p in m.parameters())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("card_gb", [80, 48])
@pytest.mark.parametrize("budget", sorted(BUDGETS))
def test_vit_g_reference_budgets_are_accepted_on_80_and_48_gb_cards(monkeypatch, precision, card_gb, budget):
    from vjepa2_core.planning.budget import available_bytes, plan_budget_refusal

    wm = giant_on_gpu(precision)
    assert (wm.tokens_per_frame, wm.predictor.predictor_embed_dim, wm.predictor.depth) == (256, 1024, 24)
    horizon, samples, iterations = BUDGETS[budget]
    weights = weight_bytes(wm)
    for cached in (0, 30 * 2**30 if card_gb == 80 else 15 * 2**30):  # at configure, and after earlier plans
        fake_card(monkeypatch, card_gb * 1e9, weights, cached)
        assert plan_budget_refusal(wm, horizon, samples, iterations) is None
        limit = available_bytes(wm.device)
        cost = plan_cost(wm, horizon, samples, iterations, limit)
        assert cost.peak_bytes <= limit and 1 <= cost.chunk <= samples
        assert cost.chunk >= 64, cost  # chunks stay large enough to keep a GPU busy
    unchunked = plan_cost(wm, horizon, samples, iterations)
    if precision == "fp32":  # all samples at once would not fit: the chunking is what makes these budgets run
        assert unchunked.peak_bytes > limit and cost.chunk < samples


def test_the_limit_counts_the_allocators_unused_cache(monkeypatch):
    from vjepa2_core.planning.budget import available_bytes

    wm = giant_on_gpu("bf16")
    fake_card(monkeypatch, 80e9, weight_bytes(wm))
    fresh = available_bytes(wm.device)
    fake_card(monkeypatch, 80e9, weight_bytes(wm), cached=30 * 2**30)  # a previous plan's blocks, free for reuse
    assert available_bytes(wm.device) == fresh


def test_a_budget_whose_single_rollout_cannot_fit_is_refused(monkeypatch):
    from vjepa2_core.planning.budget import plan_budget_refusal

    wm = giant_on_gpu("fp32")
    fake_card(monkeypatch, 8e9, weight_bytes(wm))  # ~1.4 GiB a plan may use next to 4.9 GiB of fp32 weights
    assert plan_budget_refusal(wm, 2, 400, 10) is None  # small chunks of a short horizon fit
    reason = plan_budget_refusal(wm, 31, 100, 10)  # one sample of 31 frames: 1.5 GiB of K/V alone
    assert reason is not None and "GiB per CEM iteration" in reason, reason
    assert plan_cost(wm, 31, 100, 10, 2**30).chunk == 0


def test_the_time_check_still_refuses_what_misses_the_deadline(monkeypatch):
    from vjepa2_core.planning.budget import plan_budget_refusal

    wm = giant_on_gpu("bf16")
    fake_card(monkeypatch, 80e9, weight_bytes(wm))
    speed = 1e-6  # seconds per token-frame: ~2 s for the paper budget (10 x 800 x 258 token-frames)
    assert plan_budget_refusal(wm, 1, 800, 10, speed, deadline=10.0) is None
    reason = plan_budget_refusal(wm, 2, 4000, 10, speed, deadline=10.0)
    assert reason is not None and "plan deadline" in reason, reason
