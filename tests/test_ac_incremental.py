"""Incremental (K/V-cached) rollout of the AC predictor equals the full block-causal forward pass."""

from __future__ import annotations

import pytest
import torch

from vjepa2_core.models import ACCache, ACPredictor, build_reference_model

ATOL = 1e-5


@pytest.fixture(scope="module", params=[False, True], ids=["no_extrinsics", "extrinsics"])
def model(request, fixtures_dir) -> ACPredictor:
    fx = torch.load(fixtures_dir / "ac_predictor.pt", weights_only=True)
    m = build_reference_model("ac_predictor", **{**fx["config"], "use_extrinsics": request.param})
    m.load_state_dict(fx["state_dict"], strict=True)  # extrinsics_encoder is always in the reference weights
    return m.eval()


def sequence(model: ACPredictor, batch: int, frames: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, frames * model.tokens_per_frame, model.embed_dim, generator=g)
    actions = torch.randn(batch, frames, 7, generator=g)
    states = torch.randn(batch, frames, 7, generator=g)
    extrinsics = torch.randn(batch, frames, 6, generator=g) if model.use_extrinsics else None
    return x, actions, states, extrinsics


def frame(x, actions, states, extrinsics, t: int, tokens: int):
    ext = extrinsics[:, t] if extrinsics is not None else None
    return x[:, t * tokens : (t + 1) * tokens], actions[:, t], states[:, t], ext


def rollout(model: ACPredictor, cache: ACCache, x, actions, states, extrinsics, start: int = 0) -> torch.Tensor:
    outs = []
    for t in range(start, actions.shape[1]):
        x_t, a_t, s_t, e_t = frame(x, actions, states, extrinsics, t, model.tokens_per_frame)
        outs.append(model.forward_frame(x_t, a_t, s_t, cache, extrinsics_t=e_t))
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("frames", [1, 2, 3, 4])
def test_incremental_equals_full(model, frames):
    x, actions, states, extrinsics = sequence(model, 2, frames)
    with torch.no_grad():
        full = model(x, actions, states, extrinsics)
        cache = model.new_cache()
        inc = rollout(model, cache, x, actions, states, extrinsics)
    assert cache.num_frames == frames and cache.batch_size == 2
    torch.testing.assert_close(inc, full, atol=ATOL, rtol=0)


def test_preallocated_cache_and_multi_frame_chunks(model):
    x, actions, states, extrinsics = sequence(model, 2, 4, seed=1)
    n2 = 2 * model.tokens_per_frame
    with torch.no_grad():
        full = model(x, actions, states, extrinsics)
        cache = model.new_cache(max_frames=4)
        ext2 = extrinsics[:, :2] if extrinsics is not None else None
        head = model(x[:, :n2], actions[:, :2], states[:, :2], ext2, cache=cache)  # two frames at once
        tail = rollout(model, cache, x, actions, states, extrinsics, start=2)
    torch.testing.assert_close(torch.cat([head, tail], dim=1), full, atol=ATOL, rtol=0)
    assert cache.num_frames == 4


def test_expand_equals_repeated_batch(model):
    batch = 5
    x, actions, states, extrinsics = sequence(model, 1, 3, seed=2)
    # future actions differ per row; the first frame is shared (batch 1, then expanded)
    g = torch.Generator().manual_seed(3)
    actions_b = actions.repeat(batch, 1, 1)
    actions_b[:, 1:] = torch.randn(batch, 2, 7, generator=g)
    x_b, states_b = x.repeat(batch, 1, 1), states.repeat(batch, 1, 1)
    ext_b = extrinsics.repeat(batch, 1, 1) if extrinsics is not None else None
    with torch.no_grad():
        full = model(x_b, actions_b, states_b, ext_b)
        base = model.new_cache()
        first = rollout(
            model,
            base,
            x[:, : model.tokens_per_frame],
            actions[:, :1],
            states[:, :1],
            extrinsics[:, :1] if extrinsics is not None else None,
        )
        keys_before = base.keys[0].clone()
        expanded = base.expand(batch)
        assert expanded.keys[0].stride(0) == 0, "expand must not copy"
        rest = rollout(model, expanded, x_b, actions_b, states_b, ext_b, start=1)
    torch.testing.assert_close(torch.cat([first.expand(batch, -1, -1), rest], dim=1), full, atol=ATOL, rtol=0)
    assert base.num_frames == 1 and expanded.num_frames == 3
    torch.testing.assert_close(base.keys[0], keys_before, atol=0, rtol=0)  # the source cache is untouched


def test_select_and_clone(model):
    x, actions, states, extrinsics = sequence(model, 3, 2, seed=4)
    tokens = model.tokens_per_frame
    with torch.no_grad():
        full = model(x, actions, states, extrinsics)
        cache = model.new_cache()
        rollout(
            model,
            cache,
            x[:, :tokens],
            actions[:, :1],
            states[:, :1],
            extrinsics[:, :1] if extrinsics is not None else None,
        )
        copy = cache.clone()
        picked = cache.select(torch.tensor([2, 0]))
        ext = extrinsics[:, 1] if extrinsics is not None else None
        out = model.forward_frame(x[:, tokens:], actions[:, 1], states[:, 1], cache, ext)
        ext_p = ext[[2, 0]] if ext is not None else None
        out_p = model.forward_frame(x[[2, 0], tokens:], actions[[2, 0], 1], states[[2, 0], 1], picked, ext_p)
    torch.testing.assert_close(out, full[:, tokens:], atol=ATOL, rtol=0)
    torch.testing.assert_close(out_p, full[[2, 0], tokens:], atol=ATOL, rtol=0)
    assert copy.num_frames == 1 and cache.num_frames == 2 and copy.length == tokens + model.cond_tokens
    with pytest.raises(IndexError):
        cache.select([3])


def test_bad_inputs_are_clear_errors(model):
    x, actions, states, extrinsics = sequence(model, 2, 1)
    ext = extrinsics[:, 0] if extrinsics is not None else None
    cache = model.new_cache()
    with torch.no_grad():
        model.forward_frame(x[:1], actions[:1, 0], states[:1, 0], cache, None if ext is None else ext[:1])
        with pytest.raises(ValueError, match="use expand"):
            model.forward_frame(x, actions[:, 0], states[:, 0], cache, ext)
        with pytest.raises(ValueError, match="actions must be"):
            model(x, actions[:, :, :6], states, extrinsics)
        with pytest.raises(ValueError, match="multiple of"):
            model(x[:, :-1], actions, states, extrinsics)
    with pytest.raises(ValueError, match="batch-1"):
        cache.select([0, 0]).expand(3)
    assert cache.num_frames == 1  # failed calls leave the cache unchanged


def test_frames_beyond_config_grid_depth(model):
    """The mask is built per call, so T may exceed num_frames // tubelet_size of the config."""
    frames = model.grid_depth + 2
    x, actions, states, extrinsics = sequence(model, 1, frames, seed=5)
    with torch.no_grad():
        full = model(x, actions, states, extrinsics, frames=frames)
        inc = rollout(model, model.new_cache(), x, actions, states, extrinsics)
    torch.testing.assert_close(inc, full, atol=ATOL, rtol=0)


def test_tables_cached_in_inference_mode_still_train(model):
    """RoPE tables / masks cached under inference_mode must not break a later training step."""
    fresh = ACPredictor(
        **{
            **dict(img_size=32, patch_size=8, num_frames=8, embed_dim=96),
            "depth": 1,
            "predictor_embed_dim": 64,
            "num_heads": 4,
            "use_extrinsics": model.use_extrinsics,
        }
    )
    x, actions, states, extrinsics = sequence(fresh, 1, 2)
    with torch.inference_mode():
        fresh(x, actions, states, extrinsics)
    fresh(x, actions, states, extrinsics).square().mean().backward()
    assert fresh.predictor_blocks[0].attn.qkv.weight.grad.abs().sum() > 0
