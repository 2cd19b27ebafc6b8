"""prepare_cpu_inference swaps the fast path into a reference model without changing its state or its outputs, and
the kernel switches hold for the thread that sets them only."""

from __future__ import annotations

import copy
import threading

import torch

from vjepa2_core.models import build_reference_model
from vjepa2_core.models.ac_cache import ACCache
from vjepa2_core.models.cpu_inference import FusedAttention, FusedBlock, FusedMLP, prepare_cpu_inference
from vjepa2_core.models.cpu_kernels import (
    PackedLinear,
    fast_kernels_enabled,
    frame_attention,
    onednn_linear_available,
    reference_kernels,
    small_attention,
    without_native_kernels,
)
from vjepa2_core.models.modules import Block, rope_tables


def tiny_ac_predictor() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_reference_model(
        "ac_predictor", img_size=64, patch_size=16, num_frames=8, embed_dim=64, predictor_embed_dim=64, depth=2,
        num_heads=2,
    ).eval().requires_grad_(False)  # fmt: skip


def test_prepare_swaps_in_fused_blocks_with_the_same_parameters_and_outputs():
    reference = tiny_ac_predictor()
    model = copy.deepcopy(reference)
    params = dict(model.named_parameters())
    x, actions, states = torch.randn(6, 2 * 16, 64), torch.randn(6, 2, 7), torch.randn(6, 2, 7)
    with torch.inference_mode():
        want = reference(x, actions, states)
        want_step = reference.forward_frame(x[:, 16:], actions[:, 1], states[:, 1], reference.new_cache())
    done = prepare_cpu_inference(model)
    assert done.fused_blocks == 2 and all(type(b) is FusedBlock for b in model.predictor_blocks)
    assert all(type(b.attn) is FusedAttention and type(b.mlp) is FusedMLP for b in model.predictor_blocks)
    assert done.packed_layers == (13 if onednn_linear_available() else 0)  # 4 per block, 4 input layers, proj
    assert not any(type(m) is Block for m in model.modules())
    assert dict(model.named_parameters()) == params  # the same Parameter objects: a class swap, not a copy
    assert model.state_dict().keys() == reference.state_dict().keys()
    with torch.inference_mode():
        torch.testing.assert_close(model(x, actions, states), want, rtol=1e-5, atol=1e-5)
        got_step = model.forward_frame(x[:, 16:], actions[:, 1], states[:, 1], model.new_cache())
    torch.testing.assert_close(got_step, want_step, rtol=1e-5, atol=1e-5)
    assert any(isinstance(m, PackedLinear) for m in model.modules()) == onednn_linear_available()
    assert prepare_cpu_inference(model).fused_blocks == 0  # already fused: nothing to do


def test_a_budget_packs_the_first_modules_first():
    first, second = tiny_ac_predictor(), tiny_ac_predictor()
    size = first.predictor_embed.weight.numel() * 4
    done = prepare_cpu_inference(first, second, packed_weight_bytes=size)
    if onednn_linear_available():
        assert done.packed_layers == 1 and done.packed_bytes == size
        assert isinstance(first.predictor_embed, PackedLinear)
    assert not any(isinstance(m, PackedLinear) for m in second.modules())
    assert done.fused_blocks == 4  # fusing costs no memory: every block of both


def attention_inputs():
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(4, 10, 3, 2, 32, generator=g)
    rope = rope_tables(torch.randint(0, 9, (10, 3), generator=g).float(), 32, torch.float32)
    q = torch.randn(4, 4, 6, 8, generator=g)
    return qkv, rope, q


def kernels_in_use() -> tuple[bool, bool, bool]:
    """(fast kernels on, chunked attention ran, native kernel ran) in the calling thread."""
    qkv, rope, q = attention_inputs()
    with torch.inference_mode():
        native = frame_attention(qkv, rope, ACCache(depth=1).layer(0)) is not None
        return fast_kernels_enabled(), small_attention(q, q, q) is not None, native


def test_kernel_switches_hold_only_for_the_thread_that_sets_them():
    """The node plans on a worker thread: a switch set there must not reach the main thread, nor the reverse."""
    steps = {name: threading.Event() for name in ("worker_looked", "main_left", "worker_inside", "main_looked")}
    seen: dict[str, tuple[bool, bool, bool]] = {}
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            seen["worker_while_main_switched_off"] = kernels_in_use()
            steps["worker_looked"].set()
            assert steps["main_left"].wait(timeout=120)
            with reference_kernels(), without_native_kernels():
                seen["worker_switched_off"] = kernels_in_use()
                steps["worker_inside"].set()
                assert steps["main_looked"].wait(timeout=120)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=worker)
    with reference_kernels(), without_native_kernels():
        seen["main_switched_off"] = kernels_in_use()
        thread.start()
        assert steps["worker_looked"].wait(timeout=120), errors
    steps["main_left"].set()
    assert steps["worker_inside"].wait(timeout=120), errors
    seen["main_while_worker_switched_off"] = kernels_in_use()
    steps["main_looked"].set()
    thread.join(timeout=120)
    assert not errors and not thread.is_alive()
    assert seen["main_switched_off"] == (False, False, False)
    assert seen["worker_while_main_switched_off"] == (True, True, True)
    assert seen["worker_switched_off"] == (False, False, False)
    assert seen["main_while_worker_switched_off"] == (True, True, True)
