"""WorldModel + CEMPlanner with the real (tiny, random-weight) V-JEPA 2-AC encoder and predictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vjepa2_core.data.transforms import ac_preprocess
from vjepa2_core.planning.cem import CEMConfig, CEMPlanner
from vjepa2_core.planning.energies import trajectory_energy
from vjepa2_core.planning.world_model import WorldModel

STATE = torch.tensor([0.45, -0.05, 0.25, 0.1, -0.2, 0.3, 0.4])


@pytest.fixture(scope="module")
def wm() -> WorldModel:
    return WorldModel.random("vit_ac_tiny", seed=0)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(2, 72, 96, 3), dtype=np.uint8)


def test_random_tiny_model_shapes(wm):
    assert wm.crop_size == 64 and wm.tokens_per_frame == 16
    assert not any(p.requires_grad for p in wm.predictor.parameters())


def test_encode_matches_reference_pipeline(wm, images):
    reps = wm.encode(images)
    # independent recomputation: AC transform, frame repeated to a 2-frame tubelet, encoder, layer norm
    clip = ac_preprocess(images[1:2], 64).unsqueeze(0).repeat(1, 1, 2, 1, 1)
    with torch.no_grad():
        expected = F.layer_norm(wm.encoder(clip), (96,))
    assert reps.shape == (2, 16, 96)
    torch.testing.assert_close(reps[1:], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reps.mean(-1), torch.zeros(2, 16), atol=1e-5, rtol=0)
    # list input with different sizes gives the same rep for the same image
    listed = wm.encode([images[0], np.ascontiguousarray(images[1][:, :72])])
    torch.testing.assert_close(listed[0], reps[0])


def test_encode_rejects_bad_images_clearly(wm, images):
    with pytest.raises(ValueError, match="uint8"):
        wm.encode(images.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[H,W,3\]"):
        wm.encode(images[0, :, :, :2])
    with pytest.raises(ValueError, match="no images"):
        wm.encode([])


def test_goal_encoding_is_computed_once(wm, images):
    calls = []
    handle = wm.encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        a = wm.encode_goal(images[0])
        b = wm.encode_goal(images[0].copy())
        c = wm.encode_goal(images[1])
    finally:
        handle.remove()
    assert a is b and len(calls) == 2
    assert not torch.equal(a, c)


def test_cached_and_uncached_rollouts_agree(wm, images):
    reps = wm.encode(images[:1])
    gen = torch.Generator().manual_seed(0)
    actions = torch.randn(6, 3, 7, generator=gen) * 0.05
    cached, s_cached = wm.rollout(reps, STATE, actions, cached=True)
    uncached, s_uncached = wm.rollout(reps, STATE, actions, cached=False)
    assert cached.shape == (6, 3, 16, 96) and s_cached.shape == (6, 3, 7)
    torch.testing.assert_close(cached, uncached, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(s_cached, s_uncached)
    goal = wm.encode(images[1:])
    for mode in ("last", "all"):
        e1 = trajectory_energy(cached, goal, "l1", mode)
        e2 = trajectory_energy(uncached, goal, "l1", mode)
        torch.testing.assert_close(e1, e2, atol=1e-6, rtol=1e-5)
    last, _ = wm.rollout(reps, STATE, actions, last_only=True)
    torch.testing.assert_close(last[:, 0], cached[:, -1])
    # predictions depend on the actions (otherwise planning would be meaningless)
    assert (cached[0] - cached[1]).abs().max() > 1e-3


def test_rollout_matches_full_predictor_call_per_step(wm, images):
    """Step h of the rollout = last frame of the predictor run on [rep, preds 1..h] with actions/states 0..h."""
    reps = wm.encode(images[:1])
    actions = torch.full((1, 2, 7), 0.02)
    pred, states = wm.rollout(reps, STATE, actions)
    seq = torch.cat([reps, pred[:, 0]], dim=1)
    all_states = torch.stack([STATE[None], states[:, 0]], dim=1)
    with torch.no_grad():
        out = wm.predictor(seq, actions, all_states)[:, -16:]
    torch.testing.assert_close(pred[:, 1], F.layer_norm(out, (96,)), atol=1e-5, rtol=1e-5)


def test_planning_with_real_predictor_respects_every_bound(wm, images):
    reps = wm.encode(images)
    cfg = CEMConfig(
        horizon=3,
        samples=32,
        topk=4,
        iterations=3,
        maxnorm=0.04,
        rotation=True,
        rot_maxnorm=0.03,
        axis={"z": 0.0},
        close_gripper=2,
        workspace=((0.42, -0.1, 0.2), (0.5, 0.1, 0.3)),
        elite_reuse=0.5,
        population_decay=0.8,
    )
    result = CEMPlanner(wm, cfg).plan(reps[0], STATE, reps[1], seed=3)
    a = result.actions
    assert a.shape == (3, 7) and torch.isfinite(a).all()
    assert a[:, :3].abs().max() <= 0.04 + 1e-7 and a[:, 3:6].abs().max() <= 0.03 + 1e-7
    assert torch.all(a[:, 2] == 0.0) and torch.all(a[2:, 6] == 1.0) and a[:, 6].abs().max() <= 1.0
    xyz = result.predicted_states[:, :3]
    assert torch.all(xyz >= torch.tensor([0.42, -0.1, 0.2]) - 1e-6)
    assert torch.all(xyz <= torch.tensor([0.5, 0.1, 0.3]) + 1e-6)
    assert len(result.energy_history) == 3 and result.energy > 0


def test_real_model_plans_are_seeded_and_cache_independent(wm, images):
    reps = wm.encode(images)
    cfg = CEMConfig(horizon=2, samples=24, topk=4, iterations=2)
    a = CEMPlanner(wm, cfg).plan(reps[0], STATE, reps[1], seed=11)
    b = CEMPlanner(wm, cfg).plan(reps[0], STATE, reps[1], seed=11)
    c = CEMPlanner(wm, CEMConfig(horizon=2, samples=24, topk=4, iterations=2, cached=False)).plan(
        reps[0], STATE, reps[1], seed=11
    )
    assert torch.equal(a.actions, b.actions) and a.energy == b.energy
    torch.testing.assert_close(a.actions, c.actions, atol=1e-5, rtol=0)
    assert a.energy == pytest.approx(c.energy, abs=1e-5)


def test_plan_images_reports_encode_time(wm, images):
    planner = CEMPlanner(wm, CEMConfig(horizon=1, samples=16, topk=4, iterations=2))
    result = planner.plan_images(images[0], STATE.numpy(), images[1], seed=0)
    assert result.timings["encode_s"] > 0 and result.wall_time >= result.timings["optimize_s"]
    assert result.first_action.shape == (7,)


def test_rollout_rejects_bad_shapes(wm, images):
    reps = wm.encode(images[:1])
    with pytest.raises(ValueError, match="actions"):
        wm.rollout(reps, STATE, torch.zeros(4, 7))
    with pytest.raises(ValueError, match="reps"):
        wm.rollout(reps[:, :8], STATE, torch.zeros(4, 2, 7))
    with pytest.raises(ValueError, match="batch"):
        wm.rollout(reps.expand(3, -1, -1), STATE, torch.zeros(4, 2, 7))
    with pytest.raises(ValueError, match="tokens per frame"):
        WorldModel(wm.encoder, wm.predictor, crop_size=128)


def test_bf16_precision_tracks_fp32_and_plans(wm, images):
    """The GPU path (bf16 autocast of encoder and predictor) runs here too and stays close to fp32."""
    bf16 = WorldModel.random("vit_ac_tiny", seed=0, precision="bf16")  # same weights as `wm`, converted in place
    assert bf16.predictor.predictor_blocks[0].mlp.fc1.weight.dtype == torch.bfloat16
    assert wm.predictor.predictor_blocks[0].mlp.fc1.weight.dtype == torch.float32
    ref, low = wm.encode(images), bf16.encode(images)
    assert low.dtype == torch.float32 and (low - ref).abs().mean() < 0.05 * ref.abs().mean()
    actions = torch.randn(8, 3, 7, generator=torch.Generator().manual_seed(0)) * 0.02
    pred, _ = wm.rollout(ref[:1], STATE, actions)
    pred_low, _ = bf16.rollout(ref[:1], STATE, actions)
    assert pred_low.dtype == torch.float32 and (pred_low - pred).abs().mean() < 0.05 * pred.abs().mean()
    assert not torch.equal(pred_low, pred), "bf16 autocast must actually run the matmuls in bf16"
    cfg = CEMConfig(horizon=2, samples=16, topk=4, iterations=2)
    result = CEMPlanner(bf16, cfg).plan(ref[:1], STATE, ref[1:], seed=0)
    assert np.isfinite(result.energy) and result.actions.shape == (2, 7)
    with pytest.raises(ValueError, match="precision must be one of"):
        WorldModel(wm.encoder, wm.predictor, crop_size=wm.crop_size, precision="fp8")
