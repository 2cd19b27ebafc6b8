"""The models reproduce the public reference implementation on its golden vectors (fp32 CPU, atol 1e-4)."""

from __future__ import annotations

import math

import pytest
import torch

from vjepa2_core.models import (
    ENCODER_SIZES,
    AttentiveClassifier,
    VisionTransformer,
    build_reference_model,
    vit_giant,
    vit_giant_xformers,
)
from vjepa2_core.models.modules import SwiGLUFFN, apply_rope, rope_tables, sincos_3d

ATOL = 1e-4


def load(fixtures_dir, name: str) -> dict:
    return torch.load(fixtures_dir / f"{name}.pt", weights_only=True)


def build(fixture: dict, kind: str) -> torch.nn.Module:
    model = build_reference_model(kind, **fixture["config"])
    model.load_state_dict(fixture["state_dict"], strict=True)
    return model.eval()


@pytest.mark.parametrize("name", ["encoder_rope_video", "encoder_sincos_video"])
def test_encoder_matches_reference(fixtures_dir, name):
    fx = load(fixtures_dir, name)
    model = build(fx, "encoder")
    x, keep = fx["inputs"]["x"], fx["inputs"]["keep"]
    with torch.no_grad():
        y = model(x)
        y_masked = model(x, masks=[keep])
        y_masked_tensor = model(x, masks=keep)
    torch.testing.assert_close(y, fx["outputs"]["y"], atol=ATOL, rtol=0)
    torch.testing.assert_close(y_masked, fx["outputs"]["y_masked"], atol=ATOL, rtol=0)
    torch.testing.assert_close(y_masked_tensor, y_masked, atol=0, rtol=0)


def test_encoder_two_masks_stack_along_batch(fixtures_dir):
    fx = load(fixtures_dir, "encoder_rope_video")
    model = build(fx, "encoder")
    x, keep = fx["inputs"]["x"], fx["inputs"]["keep"]
    other = torch.arange(keep.shape[1]).expand_as(keep)
    with torch.no_grad():
        both = model(x, masks=[keep, other])
        single = model(x, masks=[other])
    assert both.shape == (2 * x.shape[0], keep.shape[1], model.embed_dim)
    torch.testing.assert_close(both[: x.shape[0]], fx["outputs"]["y_masked"], atol=ATOL, rtol=0)
    torch.testing.assert_close(both[x.shape[0] :], single, atol=1e-6, rtol=0)


def test_predictor_matches_reference(fixtures_dir):
    fx = load(fixtures_dir, "predictor_rope")
    model = build(fx, "predictor")
    inp = fx["inputs"]
    with torch.no_grad():
        y = model(inp["x"], [inp["masks_x"]], [inp["masks_y"]], mask_index=int(inp["mask_index"]))
        other = model(inp["x"], [inp["masks_x"]], [inp["masks_y"]], mask_index=int(inp["mask_index"]) + 1)
    torch.testing.assert_close(y, fx["outputs"]["y"], atol=ATOL, rtol=0)
    assert (other - y).abs().max() > 1e-3, "mask_index must select a different mask token"


def test_ac_predictor_matches_reference_and_is_block_causal(fixtures_dir):
    fx = load(fixtures_dir, "ac_predictor")
    model = build(fx, "ac_predictor")
    inp, out = fx["inputs"], fx["outputs"]
    n_prefix = out["y_prefix"].shape[1]
    t_prefix = n_prefix // model.tokens_per_frame
    with torch.no_grad():
        y = model(inp["x"], inp["actions"], inp["states"])
        y_prefix = model(inp["x"][:, :n_prefix], inp["actions"][:, :t_prefix], inp["states"][:, :t_prefix])
        # changing the last frame's inputs must not change earlier outputs
        late = inp["actions"].clone()
        late[:, -1] += 1.0
        y_late = model(inp["x"], late, inp["states"])
    torch.testing.assert_close(y, out["y"], atol=ATOL, rtol=0)
    torch.testing.assert_close(y_prefix, out["y_prefix"], atol=ATOL, rtol=0)
    torch.testing.assert_close(y_late[:, :n_prefix], y[:, :n_prefix], atol=1e-6, rtol=0)
    assert (y_late[:, n_prefix:] - y[:, n_prefix:]).abs().max() > 1e-3


def test_attentive_classifier_matches_reference(fixtures_dir):
    fx = load(fixtures_dir, "attentive_classifier")
    model = build(fx, "attentive_classifier")
    with torch.no_grad():
        y = model(fx["inputs"]["x"])
    torch.testing.assert_close(y, fx["outputs"]["y"], atol=ATOL, rtol=0)
    assert isinstance(model, AttentiveClassifier)
    assert model.pooler.cross_attention_block.norm1.eps == 1e-5


@pytest.mark.parametrize(
    "name,kind",
    [("encoder_rope_video", "encoder"), ("predictor_rope", "predictor"), ("ac_predictor", "ac_predictor")],
)
def test_strict_loading_rejects_wrong_keys(fixtures_dir, name, kind):
    fx = load(fixtures_dir, name)
    model = build_reference_model(kind, **fx["config"])
    renamed = dict(fx["state_dict"])
    key = next(iter(renamed))
    renamed["module." + key] = renamed.pop(key)
    with pytest.raises(RuntimeError, match="Missing key|Unexpected key"):
        model.load_state_dict(renamed, strict=True)
    assert not any("cache" in k or "mask" == k for k in model.state_dict())


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model kind"):
        build_reference_model("decoder")


def test_encoder_rejects_bad_input(fixtures_dir):
    model = build(load(fixtures_dir, "encoder_rope_video"), "encoder")
    with pytest.raises(ValueError, match="video"):
        model(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="multiples of patch_size"):
        model(torch.zeros(1, 3, 4, 30, 32))


def test_out_layers_returns_normed_intermediates(fixtures_dir):
    fx = load(fixtures_dir, "encoder_rope_video")
    model = build(fx, "encoder")
    x = fx["inputs"]["x"]
    model.out_layers = [0, 1]
    with torch.no_grad():
        outs = model(x)
    assert isinstance(outs, list) and len(outs) == 2
    torch.testing.assert_close(outs[1], fx["outputs"]["y"], atol=ATOL, rtol=0)  # the last layer is the output
    model.out_layers = None
    with torch.no_grad():
        tokens = model.patch_embed(x)
        rope = model._rope(None, 32, (4, 4), tokens.dtype, tokens.device)
        first = model.norm(model.blocks[0](tokens, rope))
    torch.testing.assert_close(outs[0], first, atol=1e-6, rtol=0)
    assert (outs[0] - outs[1]).abs().max() > 1e-2


@pytest.mark.parametrize("name,kind", [("encoder_rope_video", "encoder"), ("ac_predictor", "ac_predictor")])
def test_activation_checkpointing_same_outputs_and_grads(fixtures_dir, name, kind):
    fx = load(fixtures_dir, name)
    inputs = list(fx["inputs"].values()) if kind == "ac_predictor" else [fx["inputs"]["x"]]
    results = []
    for ckpt in (False, True):
        model = build_reference_model(kind, **fx["config"], use_activation_checkpointing=ckpt)
        model.load_state_dict(fx["state_dict"], strict=True)
        out = model(*inputs)
        out.square().mean().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out.detach(), grads))
    (out0, g0), (out1, g1) = results
    torch.testing.assert_close(out1, out0, atol=1e-6, rtol=0)
    assert g0.keys() == g1.keys() and len(g0) > 10
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], atol=1e-6, rtol=1e-5, msg=n)


def test_swiglu_parameter_shapes():
    model = VisionTransformer(
        img_size=32, patch_size=8, num_frames=2, embed_dim=96, depth=1, num_heads=4, use_silu=True
    )
    mlp = model.blocks[0].mlp
    assert isinstance(mlp, SwiGLUFFN)
    hidden = (int(2 * 384 / 3) + 7) // 8 * 8  # 256
    assert mlp.fc1.weight.shape == (hidden, 96) and mlp.fc2.weight.shape == (hidden, 96)
    assert mlp.fc3.weight.shape == (96, hidden)
    narrow = VisionTransformer(
        img_size=32, patch_size=8, num_frames=2, embed_dim=96, depth=1, num_heads=4, use_silu=True, wide_silu=False
    )
    assert narrow.blocks[0].mlp.fc1.weight.shape == (384, 96)
    assert {k.split("mlp.")[1] for k in model.state_dict() if "mlp." in k} == {
        f"fc{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")
    }
    y = model(torch.randn(1, 3, 2, 32, 32))
    assert y.shape == (1, 16, 96) and torch.isfinite(y).all()


def test_rope_bug_compatible_rotation():
    """Frequencies concatenated (not interleaved), pair-interleaved partner, s = 2*floor(floor(hd/3)/2)."""
    hd = 16  # s = 4: dims 0-3 t, 4-7 h, 8-11 w, 12-15 unrotated
    x = torch.randn(1, 1, 1, hd)
    pos = torch.tensor([[3.0, 5.0, 7.0]])
    out = apply_rope(x, rope_tables(pos, hd, torch.float32))[0, 0, 0]
    omega = [1.0, 1.0 / 100.0]  # 10000^(-i/2) for i = 0, 1
    xs = x[0, 0, 0]
    for axis, p in enumerate((3.0, 5.0, 7.0)):
        base = 4 * axis
        for j in range(4):
            theta = p * omega[j % 2]
            partner = -xs[base + j + 1] if j % 2 == 0 else xs[base + j - 1]
            expected = xs[base + j] * math.cos(theta) + partner * math.sin(theta)
            assert abs(out[base + j].item() - expected.item()) < 1e-5
    torch.testing.assert_close(out[12:], xs[12:], atol=0, rtol=0)


def test_sincos_table_values():
    table = sincos_3d(96, 2, 4, 4, uniform_power=True)  # each axis 32 dims: 16 sin then 16 cos
    assert table.shape == (32, 96)
    torch.testing.assert_close(table[0], torch.cat([torch.zeros(16), torch.ones(16)] * 3))
    row = 1 * 16 + 2 * 4 + 3  # t=1, h=2, w=3
    omega = 1.0 / 10000 ** (torch.arange(16, dtype=torch.float64) / 16)
    for axis, p in enumerate((1, 2, 3)):
        expected = torch.cat([torch.sin(p * omega), torch.cos(p * omega)]).float()
        torch.testing.assert_close(table[row, 32 * axis : 32 * (axis + 1)], expected)


def test_size_helpers():
    assert ENCODER_SIZES["vit_giant"] == dict(embed_dim=1408, depth=40, num_heads=22, mlp_ratio=48 / 11)
    assert vit_giant_xformers is vit_giant
    with torch.device("meta"):
        g = vit_giant(img_size=256, num_frames=64, use_rope=True)
    assert g.blocks[0].mlp.fc1.out_features == 6144 and g.blocks[0].attn.num_heads == 22
    assert g.norm.eps == 1e-6 and len(g.blocks) == 40
    assert 1.0e9 < sum(p.numel() for p in g.parameters()) < 1.05e9


def test_nonsquare_inputs_use_the_real_grid(fixtures_dir):
    fx = load(fixtures_dir, "encoder_rope_video")
    model = build(fx, "encoder")
    x = torch.randn(1, 3, 4, 32, 48)  # 2 x 4 x 6 tokens
    every = torch.arange(48)[None]
    with torch.no_grad():
        y = model(x)
        y_all = model(x, masks=[every])
        model.handle_nonsquare_inputs = False  # square-grid assumption of the config (4 x 4)
        y_square = model(x)
        y_fixture = model(fx["inputs"]["x"])
    assert y.shape == (1, 48, 96)
    torch.testing.assert_close(y_all, y, atol=1e-5, rtol=0)
    assert (y_square - y).abs().max() > 1e-3  # column positions differ when W != H
    torch.testing.assert_close(y_fixture, fx["outputs"]["y"], atol=ATOL, rtol=0)  # identical at the config size


def test_sincos_table_resizing(fixtures_dir):
    fx = load(fixtures_dir, "encoder_sincos_video")
    model = build(fx, "encoder")
    pos = model.pos_embed
    fewer = model.interpolate_pos_encoding(torch.zeros(1, 3, 2, 32, 32), pos)
    torch.testing.assert_close(fewer, pos[:, :16], atol=0, rtol=0)  # fewer frames: truncated
    larger = model.interpolate_pos_encoding(torch.zeros(1, 3, 4, 64, 64), pos)
    assert larger.shape == (1, 2 * 8 * 8, 96)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 4, 64, 64)).shape == (1, 128, 96)
        torch.testing.assert_close(model(fx["inputs"]["x"][:, :, :2]).shape, (2, 16, 96))


def test_image_model_uses_conv2d():
    model = VisionTransformer(
        img_size=32, patch_size=8, num_frames=1, embed_dim=96, depth=1, num_heads=4, use_rope=True
    )
    assert model.patch_embed.proj.weight.shape == (96, 3, 8, 8)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 16, 96)
    with pytest.raises(ValueError, match="image"):
        model(torch.randn(2, 3, 2, 32, 32))


def test_predictor_is_invariant_to_context_order(fixtures_dir):
    """Tokens are sorted by grid position, so the order of the context tokens does not matter."""
    fx = load(fixtures_dir, "predictor_rope")
    model = build(fx, "predictor")
    inp = fx["inputs"]
    perm = torch.randperm(inp["x"].shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(inp["x"][:, perm], inp["masks_x"][:, perm], inp["masks_y"], mask_index=int(inp["mask_index"]))
    torch.testing.assert_close(y, fx["outputs"]["y"], atol=ATOL, rtol=0)


def test_predictor_return_all_tokens_and_chop(fixtures_dir):
    fx = load(fixtures_dir, "predictor_rope")
    inp = fx["inputs"]
    model = build_reference_model("predictor", **fx["config"], return_all_tokens=True)
    model.load_state_dict(fx["state_dict"], strict=True)
    with torch.no_grad():
        every = model.eval()(inp["x"], inp["masks_x"], inp["masks_y"], mask_index=int(inp["mask_index"]))
    index = torch.cat([inp["masks_x"], inp["masks_y"]], dim=1).sort(dim=1).values
    assert every.shape == (2, index.shape[1], 96)
    is_target = torch.isin(index[0], inp["masks_y"][0])
    torch.testing.assert_close(every[0, is_target], fx["outputs"]["y"][0], atol=ATOL, rtol=0)
    chopped = build_reference_model("predictor", **fx["config"], return_all_tokens=True, chop_last_n_tokens=3)
    assert chopped(inp["x"], inp["masks_x"], inp["masks_y"]).shape == (2, index.shape[1] - 3, 96)
    with pytest.raises(ValueError, match="return_all_tokens"):
        build_reference_model("predictor", **fx["config"], chop_last_n_tokens=3)


def test_sincos_predictor_runs_and_is_order_invariant():
    model = build_reference_model(
        "predictor",
        img_size=32,
        patch_size=8,
        num_frames=4,
        embed_dim=96,
        predictor_embed_dim=64,
        depth=1,
        num_heads=4,
        use_mask_tokens=True,
        zero_init_mask_tokens=False,
        use_rope=False,
    ).eval()
    assert model.predictor_pos_embed.shape == (1, 32, 64) and not model.predictor_pos_embed.requires_grad
    x, masks_x, masks_y = torch.randn(1, 5, 96), torch.tensor([[0, 3, 9, 20, 31]]), torch.tensor([[1, 2, 30]])
    perm = torch.tensor([4, 2, 0, 1, 3])
    with torch.no_grad():
        y = model(x, masks_x, masks_y)
        y_perm = model(x[:, perm], masks_x[:, perm], masks_y)
    assert y.shape == (1, 3, 96)
    torch.testing.assert_close(y_perm, y, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="out of range"):
        model(x, masks_x, torch.tensor([[32]]))
