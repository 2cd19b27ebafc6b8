"""The planner's fast CPU kernels give the reference kernels' results, and step aside where they do not apply."""

from __future__ import annotations

import copy
import pickle
import resource

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vjepa2_core.devices import keep_freed_cpu_memory
from vjepa2_core.models import cpu_kernels
from vjepa2_core.models.cpu_inference import prepare_cpu_inference
from vjepa2_core.models.cpu_kernels import (
    PackedLinear,
    linear_add,
    linear_gelu,
    onednn_bf16_available,
    onednn_linear_available,
    pack_linears,
    reference_kernels,
    small_attention,
)
from vjepa2_core.models.modules import MLP, Block

needs_onednn = pytest.mark.skipif(not onednn_linear_available(), reason="this torch build has no oneDNN CPU kernels")


def packed(in_features: int = 48, out_features: int = 80, bias: bool = True) -> tuple[nn.Linear, PackedLinear]:
    torch.manual_seed(0)
    plain = nn.Linear(in_features, out_features, bias=bias).requires_grad_(False)
    return plain, PackedLinear.from_linear(plain)


@needs_onednn
@pytest.mark.parametrize("shape", [(40, 48), (3, 66, 48), (1, 32, 48)])
@pytest.mark.parametrize("bias", [True, False])
def test_packed_linear_equals_linear_and_fuses_exact_gelu(shape, bias):
    plain, fast = packed(bias=bias)
    x = torch.randn(shape)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fast(x, activation="gelu"), F.gelu(plain(x)), rtol=1e-5, atol=1e-5)
        assert "_packed_weight" in fast.__dict__  # the oneDNN path ran, not the fallback


@needs_onednn
def test_packed_linear_leaves_a_few_rows_to_f_linear():
    plain, fast = packed()
    x = torch.randn(2, 48)
    with torch.inference_mode():
        assert torch.equal(fast(x), F.linear(x, plain.weight, plain.bias))
        assert "_packed_weight" not in fast.__dict__


@needs_onednn
def test_packed_linear_shares_parameters_and_state_dict():
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weight = model[0].weight
    assert pack_linears(model) == (2, (8 * 16 + 16 * 4) * 4)
    assert isinstance(model[0], PackedLinear) and model[0].weight is weight
    assert model.state_dict().keys() == before.keys()
    with torch.inference_mode():
        model(torch.randn(64, 8))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    clone = copy.deepcopy(model)  # the packed oneDNN copy is not part of the module's state
    restored = pickle.loads(pickle.dumps(model))
    x = torch.randn(50, 8)
    with torch.inference_mode():
        torch.testing.assert_close(clone(x), model(x))
        torch.testing.assert_close(restored(x), model(x))


def test_pack_linears_stays_within_its_byte_budget():
    model = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 4))
    assert pack_linears(model, max_bytes=8 * 16 * 4 + 16 * 4 * 4) == (2, (8 * 16 + 16 * 4) * 4)  # skips the 2nd
    assert [isinstance(m, PackedLinear) for m in model] == [True, False, True]


@needs_onednn
def test_packed_linear_follows_weight_changes():
    plain, fast = packed()
    x = torch.randn(40, 48)
    with torch.inference_mode():
        fast(x)
        assert "_packed_weight" in fast.__dict__
    with torch.no_grad():
        plain.weight.mul_(-2.0)  # the shared parameter changes in place (load_state_dict, an optimiser step)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), F.linear(x, plain.weight, plain.bias), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_packed_linear_built_under_inference_mode_stays_on_the_plain_path():
    with torch.inference_mode():  # inference-tensor weights carry no version counter to notice in-place edits
        plain, fast = packed()
        x = torch.randn(40, 48)
        torch.testing.assert_close(fast(x), plain(x))
        plain.weight.mul_(0.5)
        assert torch.equal(fast(x), F.linear(x, plain.weight, plain.bias))
        assert "_packed_weight" not in fast.__dict__


@needs_onednn
def test_packed_linear_keeps_autograd_on_the_plain_path():
    plain, fast = packed()
    x = torch.randn(40, 48, requires_grad=True)
    y = fast(x, activation="gelu")
    assert y.requires_grad
    (grad,) = torch.autograd.grad(y.sum(), x)
    x2 = x.detach().requires_grad_(True)
    (expected,) = torch.autograd.grad(F.gelu(plain(x2)).sum(), x2)
    torch.testing.assert_close(grad, expected)
    assert linear_gelu(fast, x) is None  # no fused inference pass when autograd needs the graph


@needs_onednn
def test_packed_linear_bf16_matches_autocast_linear():
    plain, fast = packed()
    plain.to(torch.bfloat16)
    x = torch.randn(60, 48)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = plain(x)
        got = fast(x)
    assert got.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected.float(), rtol=2e-2, atol=2e-2)
    # oneDNN's bf16 GEMMs only where the CPU has them (AVX-512 BW/VL/DQ or AVX-NE-CONVERT), else F.linear
    assert ("_packed_weight" in fast.__dict__) == onednn_bf16_available()


@needs_onednn
def test_reference_kernels_switch_the_fast_paths_off():
    plain, fast = packed()
    x = torch.randn(40, 48)
    with torch.inference_mode(), reference_kernels():
        assert torch.equal(fast(x), F.linear(x, plain.weight, plain.bias))
        assert "_packed_weight" not in fast.__dict__
        q = torch.randn(4, 4, 5, 8)
        assert small_attention(q, q, q) is None
    with torch.inference_mode():
        assert small_attention(q, q, q) is not None


@needs_onednn
@pytest.mark.parametrize("epilogue", [True, False], ids=["gelu-in-the-gemm-epilogue", "gemm-then-gelu-in-place"])
def test_mlp_fused_gelu_equals_unfused(epilogue, monkeypatch):
    """Both ways the packed fc1 applies GELU (chosen per CPU by fused_gelu_pays) equal the plain MLP."""
    monkeypatch.setattr(cpu_kernels, "fused_gelu_pays", lambda: epilogue)
    torch.manual_seed(1)
    mlp = MLP(32, 128).eval().requires_grad_(False)
    x = torch.randn(4, 9, 32)
    with torch.inference_mode():
        expected = mlp(x)
        prepare_cpu_inference(mlp)
        hidden = linear_gelu(mlp.fc1, x)
        assert hidden is not None
        torch.testing.assert_close(hidden, F.gelu(F.linear(x, mlp.fc1.weight, mlp.fc1.bias)), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(mlp(x), expected, rtol=1e-5, atol=1e-5)


@needs_onednn
@pytest.mark.parametrize("shape", [(40, 48), (3, 66, 48)])
def test_linear_add_fuses_the_residual_and_steps_aside_where_it_cannot(shape):
    plain, fast = packed()
    x, residual = torch.randn(shape), torch.randn(*shape[:-1], 80)
    with torch.inference_mode():
        assert torch.equal(linear_add(fast, x, residual), residual + fast(x))
        assert linear_add(plain, x, residual) is None  # not a packed layer
        assert linear_add(fast, x, residual.double()) is None  # would change the sum's dtype
        assert linear_add(fast, x, residual[..., :1]) is None  # a broadcast residual: the caller adds
    assert linear_add(fast, x.requires_grad_(), residual) is None  # autograd keeps F.linear


@needs_onednn
@pytest.mark.parametrize("drop_path,use_silu", [(0.0, False), (0.2, False), (0.0, True)])
def test_block_with_fused_residuals_equals_the_reference_block(drop_path, use_silu):
    torch.manual_seed(4)
    block = Block(48, 4, drop_path=drop_path, use_silu=use_silu).eval().requires_grad_(False)
    x = torch.randn(3, 40, 48)
    with torch.inference_mode():
        with reference_kernels():
            expected = block(x)
        prepare_cpu_inference(block)
        assert linear_add(block.attn.proj, x, x) is not None
        last = block.mlp.fc3 if use_silu else block.mlp.fc2
        assert linear_add(last, torch.randn(3, 40, last.in_features), x) is not None
        assert linear_add(last, x, x) is None  # wrong input width: F.linear raises the clear error
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
    block.train()  # training with stochastic depth: the unfused path, still the same function at p=0
    torch.manual_seed(5)
    out = block(x)
    assert out.shape == x.shape and (drop_path > 0 or torch.allclose(out, expected, rtol=1e-5, atol=1e-5))


@pytest.mark.parametrize("cached", [66, 132, 198])
def test_small_attention_equals_sdpa_on_rollout_layouts(cached):
    torch.manual_seed(2)
    B, N, H, D = 7, 66, 6, 32
    qkv = torch.randn(B, N, 3, H, D)
    q = qkv[:, :, 0].transpose(1, 2)  # the strided view the attention layer hands over
    buf = torch.randn(B, H, cached + 40, D)  # a cache buffer with spare room, read through a slice
    k, v = buf[:, :, :cached], torch.randn(B, H, cached, D)
    with torch.inference_mode():
        got = small_attention(q, k, v)
        expected = F.scaled_dot_product_attention(q, k, v)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert got.transpose(1, 2).is_contiguous()  # the caller's transpose(1, 2).reshape costs no copy


def test_small_attention_steps_aside_for_grad_and_low_precision():
    q = torch.randn(2, 2, 4, 8, requires_grad=True)
    assert small_attention(q, q, q) is None
    with torch.inference_mode():
        assert small_attention(q.detach().bfloat16(), q.detach().bfloat16(), q.detach().bfloat16()) is None
        long = torch.randn(4, 4, 2000, 8)
        assert small_attention(long[:, :, :4], long, long) is None
        encoder = torch.randn(1, 16, 256, 64)  # an encoder's attention: SDPA is faster there
        assert small_attention(encoder, encoder, encoder) is None
        q = torch.randn(4, 4, 6, 8)
        shared = torch.randn(1, 4, 6, 8)  # a batch that SDPA would broadcast
        assert small_attention(q, shared, shared) is None
        assert small_attention(q, q[:, :, :0], q[:, :, :0]) is None


def test_freed_cpu_memory_is_reused_without_page_faults():
    assert keep_freed_cpu_memory(), "glibc's mallopt refused the settings"  # Linux/glibc, as here and on CI
    size = 5 << 20  # 20 MB of fp32, a rollout step's MLP activation
    for _ in range(3):
        torch.empty(size).fill_(1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        torch.empty(size).fill_(1.0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 1000, f"{faults} page faults for 10 reused 20 MB blocks (fresh pages would be ~50000)"


@needs_onednn
def test_world_model_rolls_out_on_the_fast_kernels_as_on_the_reference_ones():
    import numpy as np

    from vjepa2_core.planning.world_model import WorldModel

    wm = WorldModel.random("vit_ac_tiny", seed=0)
    assert any(isinstance(m, PackedLinear) for m in wm.predictor.modules())
    assert any(isinstance(m, PackedLinear) for m in wm.encoder.modules())
    image = np.random.default_rng(0).integers(0, 256, size=(1, 64, 64, 3), dtype=np.uint8)
    actions = torch.randn(32, 3, 7) * 0.05
    state = torch.tensor([0.45, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0])
    with reference_kernels():
        rep = wm.encode(image)
        expected, _ = wm.rollout(rep, state, actions)
    torch.testing.assert_close(wm.encode(image), rep, rtol=1e-5, atol=1e-5)
    got, _ = wm.rollout(rep, state, actions)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert any("_packed_weight" in m.__dict__ for m in wm.predictor.modules())  # the fast path ran
