"""The CPU inference fast path as a substitution: ``prepare_cpu_inference(model)`` swaps it into a model in place.

The models in this package are written in the reference form (``x = x + attn(norm1(x))``, one SDPA attention).
For the planner's rollouts on a CPU that costs about 2x (bench/plan_bench.py), so ``prepare_cpu_inference`` (called
once by ``WorldModel`` on the CPU) replaces:

- each ``Block`` by a ``FusedBlock``, whose residual additions happen in the epilogue of the output projections'
  GEMMs (oneDNN: one pass over the activations fewer) and whose attention (``FusedAttention``) picks the kernel:
  the native C kernel for a cached rollout step (RoPE, K/V append and attention in one pass), chunked bmm for short
  unmasked attention, else SDPA; RoPE on q and k together, token-major, in two passes instead of five;
- each ``nn.Linear`` by a ``PackedLinear`` (oneDNN on a weight prepacked once; GELU fused where that pays),

and tunes glibc's malloc to keep freed blocks (no page faults per step) and builds the native kernel now rather than
in the first plan. The swap is a class change of the existing modules (as ``torch.nn.utils.parametrize`` does): the
same parameters, state dict keys and module objects. Every fused path steps aside where it would change a result
(autograd, masks, dropout, other dtypes or devices), and ``cpu_kernels.reference_kernels()`` switches them all off
for the current thread, so the fused model gives the reference's outputs to fp32 rounding (tests/test_cpu_kernels.py,
tests/test_native_kernels.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vjepa2_core.devices import keep_freed_cpu_memory

from . import native
from .cpu_kernels import (
    frame_attention,
    linear_add,
    linear_gelu,
    onednn_linear_available,
    pack_linears,
    small_attention,
)
from .modules import MLP, Attention, Block, KVHook, Rope, SwiGLUFFN


def token_major_rope(rope: Rope) -> Rope:
    """Head-major tables ([N, hd] or [B, 1, N, hd]) as tables that broadcast against [B, N, 2, heads, hd]."""
    return tuple(t.transpose(-3, -2).unsqueeze(-2) if t.ndim >= 3 else t[:, None, None] for t in rope)


def fast_rope(x: Tensor, rope: Rope) -> Tensor:
    """``modules.apply_rope`` in two passes over x: x * cos, then one fused multiply-add per half of each pair
    (even += -odd * sin, odd += even * sin); no swapped copy of x. The same values to fp32 rounding."""
    cos, sin = rope
    wide = x.to(torch.promote_types(x.dtype, cos.dtype))  # bf16 q/k meet fp32 tables: cast once, not per op
    out = wide * cos
    x_pairs, out_pairs, sin_pairs = (t.unflatten(-1, (-1, 2)) for t in (wide, out, sin))
    out_pairs[..., 0].addcmul_(x_pairs[..., 1], sin_pairs[..., 0], value=-1.0)
    out_pairs[..., 1].addcmul_(x_pairs[..., 0], sin_pairs[..., 1])
    return out.to(x.dtype)


def project(layer: nn.Module, x: Tensor, drop: nn.Module, residual: Tensor | None) -> Tensor:
    """``residual + drop(layer(x))`` (just ``drop(layer(x))`` without a residual), with the addition fused into the
    GEMM where that gives the same result (inference: dropout off)."""
    if residual is None:
        return drop(layer(x))
    fused = linear_add(layer, x, residual) if not (drop.training and drop.p > 0) else None
    return fused if fused is not None else residual + drop(layer(x))


class FusedAttention(Attention):
    """``Attention`` that adds a residual in its output projection and chooses the fastest exact kernel."""

    def forward(
        self,
        x: Tensor,
        rope: Rope | None = None,
        attn_mask: Tensor | None = None,
        kv_hook: KVHook | None = None,
        residual: Tensor | None = None,
    ) -> Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim))  # [B, N, 3, heads, hd]
        drop = self.attn_drop if self.training else 0.0
        if kv_hook is not None and rope is not None and attn_mask is None and drop == 0.0:
            fused = frame_attention(qkv, rope, kv_hook)  # a rollout step on the CPU: one native kernel
            if fused is not None:
                return project(self.proj, fused, self.proj_drop, residual)
        qk = qkv[:, :, :2] if rope is None else fast_rope(qkv[:, :, :2], token_major_rope(rope))  # q, k in one pass
        q, k, v = qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)
        if kv_hook is not None:
            k, v = kv_hook(k, v)
        x = small_attention(q, k, v) if attn_mask is None and drop == 0.0 else None
        if x is None:
            x = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=drop)
        return project(self.proj, x.transpose(1, 2).reshape(B, N, C), self.proj_drop, residual)


class FusedMLP(MLP):
    """``MLP`` with GELU in fc1's epilogue (where it pays) and a residual added in fc2's."""

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        exact_gelu = isinstance(self.act, nn.GELU) and self.act.approximate == "none"
        hidden = linear_gelu(self.fc1, x) if exact_gelu else None  # fused where fc1 is a packed inference layer
        if hidden is None:
            hidden = self.act(self.fc1(x))
        return project(self.fc2, self.drop(hidden), self.drop, residual)


class FusedSwiGLUFFN(SwiGLUFFN):
    """``SwiGLUFFN`` with a residual added in fc3's epilogue."""

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        return project(self.fc3, torch.nn.functional.silu(self.fc1(x)) * self.fc2(x), self.drop, residual)


class FusedBlock(Block):
    """``Block`` whose residuals travel into the attention's and the MLP's last GEMM (reference form in training
    with stochastic depth, where a branch is dropped as a whole)."""

    def forward(
        self, x: Tensor, rope: Rope | None = None, attn_mask: Tensor | None = None, kv_hook: KVHook | None = None
    ) -> Tensor:
        if self.drop_path.training and self.drop_path.drop_prob > 0:
            return super().forward(x, rope, attn_mask, kv_hook)
        x = self.attn(self.norm1(x), rope, attn_mask, kv_hook, residual=x)
        return self.mlp(self.norm2(x), residual=x)


FUSED_LAYERS = {Attention: FusedAttention, MLP: FusedMLP, SwiGLUFFN: FusedSwiGLUFFN}


def fuse_blocks(module: nn.Module) -> int:
    """Turn every reference ``Attention``, ``MLP``, ``SwiGLUFFN`` and ``Block`` inside ``module`` into its fused
    class, in place (a fused layer called without a residual computes what the reference one does); returns the
    number of blocks fused. Subclasses of the reference layers are left as they are, and so is a block holding one."""
    for layer in module.modules():
        if type(layer) in FUSED_LAYERS:
            layer.__class__ = FUSED_LAYERS[type(layer)]
    fused = set(FUSED_LAYERS.values())
    count = 0
    for block in module.modules():
        if type(block) is Block and type(block.attn) in fused and type(block.mlp) in fused:
            block.__class__ = FusedBlock
            count += 1
    return count


@dataclass(frozen=True)
class CPUInference:
    """What ``prepare_cpu_inference`` did."""

    fused_blocks: int
    packed_layers: int
    packed_bytes: int
    native_kernels: bool  # the native C kernel built and loaded here


def prepare_cpu_inference(*modules: nn.Module, packed_weight_bytes: int | None = None) -> CPUInference:
    """Swap the CPU inference fast path into ``modules`` (in place; the same parameters and state dicts).

    Linear layers are packed in the order of ``modules`` (put the hot path first) while their weights fit in
    ``packed_weight_bytes`` (None: all): each packed layer holds a oneDNN copy of its weight.
    """
    blocks = sum(fuse_blocks(m) for m in modules)
    layers, used = 0, 0
    if onednn_linear_available():
        for m in modules:
            budget = None if packed_weight_bytes is None else packed_weight_bytes - used
            count, size = pack_linears(m, budget)
            layers, used = layers + count, used + size
    keep_freed_cpu_memory()  # rollouts allocate the same activations every step: reuse them, no page faults
    lib = native.library()  # build (or load) the rollout's attention kernel now, not in the first plan
    return CPUInference(blocks, layers, used, lib is not None)
