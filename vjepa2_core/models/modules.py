"""Building blocks shared by every V-JEPA 2 model: RoPE, sin-cos tables, MLPs, attention, blocks, patch embeds.

Parameter names and numerics follow the reference implementation so that released checkpoints load with
``strict=True`` and produce the same outputs (see shared/spec/vjepa2_facts.md sections 1.4-1.7). They are written
in the reference form; the CPU inference fast path is swapped in later (``cpu_inference.prepare_cpu_inference``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Rope = tuple[Tensor, Tensor]
# LayerNorm of the backbones (every reference size function passes eps=1e-6); the probe uses plain nn.LayerNorm.
BackboneNorm = partial(nn.LayerNorm, eps=1e-6)
KVHook = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


# ----------------------------------------------------------------------------------------------------------------
# 3-D RoPE (bug-compatible with the released weights)
# ----------------------------------------------------------------------------------------------------------------
def rope_axis_dim(head_dim: int) -> int:
    """Rotated width per axis (t, h, w): the reference uses 2 * floor(floor(hd / 3) / 2); the rest is unrotated."""
    return 2 * ((head_dim // 3) // 2)


def grid_positions(index: Tensor, height: int, width: int) -> Tensor:
    """Split flat token indices (t-major, then rows, then columns) into float (t, h, w) positions [..., 3]."""
    per_frame = height * width
    t = index // per_frame
    h = (index % per_frame) // width
    w = index % width
    return torch.stack((t, h, w), dim=-1).float()


def attention_dtype(x: Tensor) -> torch.dtype:
    """dtype q/k will have inside attention: the autocast dtype when autocast is on, else ``x.dtype``."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def rope_tables(pos: Tensor, head_dim: int, dtype: torch.dtype, rotate: Tensor | None = None) -> Rope:
    """cos/sin tables [..., N, head_dim] for positions ``pos`` [..., N, 3].

    Each axis uses the frequencies ``10000^(-i/half)`` concatenated with themselves (not interleaved), exactly as the
    reference. Like the reference, the frequencies are rounded to the q/k ``dtype`` (bf16 under autocast) while the
    angles and tables are at least fp32. ``rotate`` [..., N, 3] (bool) switches single axes off (cos=1, sin=0); the
    trailing ``head_dim - 3 * s`` dims are never rotated.
    """
    s = rope_axis_dim(head_dim)
    omega = torch.arange(s // 2, dtype=dtype, device=pos.device)
    omega = 1.0 / 10000 ** (omega / (s / 2.0))
    table_dtype = torch.promote_types(dtype, torch.float32)
    omega = torch.cat((omega, omega)).to(table_dtype)  # [s]
    angles = pos.to(table_dtype).unsqueeze(-1) * omega  # [..., N, 3, s]
    cos, sin = angles.cos(), angles.sin()
    if rotate is not None:
        keep = rotate.unsqueeze(-1)
        cos = torch.where(keep, cos, torch.ones_like(cos))
        sin = torch.where(keep, sin, torch.zeros_like(sin))
    cos, sin = cos.flatten(-2), sin.flatten(-2)  # [..., N, 3s]
    rest = head_dim - 3 * s
    if rest:
        shape = (*cos.shape[:-1], rest)
        cos = torch.cat((cos, cos.new_ones(shape)), dim=-1)
        sin = torch.cat((sin, sin.new_zeros(shape)), dim=-1)
    return cos, sin


def rotate_pairs(x: Tensor) -> Tensor:
    """The reference's rotate-half partner, pair-interleaved: (x[2i], x[2i+1]) -> (-x[2i+1], x[2i])."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


def apply_rope(x: Tensor, rope: Rope) -> Tensor:
    """x * cos + rotate_pairs(x) * sin (at least fp32, like the reference's tables), returned in x's dtype."""
    cos, sin = rope
    return (x * cos + rotate_pairs(x) * sin).to(x.dtype)


class TableCache:
    """Position tables (RoPE cos/sin, attention masks) by key, built on first use; a bounded plain dict, so never
    part of a state dict. Tables are built outside inference mode: ones made while planning stay usable for
    training."""

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._tables: dict[tuple, Any] = {}

    def get(self, key: tuple, build: Callable[[], Any]) -> Any:
        if key not in self._tables:
            if len(self._tables) >= self.max_entries:
                self._tables.clear()
            with torch.inference_mode(False):
                self._tables[key] = build()
        return self._tables[key]


# ----------------------------------------------------------------------------------------------------------------
# Fixed sin-cos position tables (use_rope=False; not used by released models)
# ----------------------------------------------------------------------------------------------------------------
def sincos_1d(dim: int, pos: Tensor) -> Tensor:
    """[sin(p * w), cos(p * w)] with w_i = 10000^(-i / (dim / 2)), in float64 like the numpy reference."""
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    angles = pos.reshape(-1).to(torch.float64)[:, None] * omega[None, :]
    return torch.cat((angles.sin(), angles.cos()), dim=1)


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> Tensor:
    """Image table [H*W, dim]: first half encodes the row, second half the column."""
    h, w = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    return torch.cat((sincos_1d(dim // 2, h), sincos_1d(dim // 2, w)), dim=1).float()


def sincos_3d(dim: int, grid_t: int, grid_h: int, grid_w: int, uniform_power: bool = False) -> Tensor:
    """Video table [T*H*W, dim] in token order, parts [t, h, w] (t gets dim/2 unless ``uniform_power``)."""
    if uniform_power:
        dim_t = dim_h = dim_w = int(math.ceil(dim / 6) * 2)
    else:
        dim_t, dim_h, dim_w = dim // 2, dim // 4, dim // 4
    t, h, w = torch.meshgrid(torch.arange(grid_t), torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    table = torch.cat((sincos_1d(dim_t, t), sincos_1d(dim_h, h), sincos_1d(dim_w, w)), dim=1)
    return table[:, :dim].float()


# ----------------------------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------------------------
class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample during training."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class MLP(nn.Module):
    """fc1 -> GELU (exact erf) -> fc2."""

    def __init__(
        self, in_features: int, hidden_features: int, act_layer: type[nn.Module] = nn.GELU, drop: float = 0.0
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


def swiglu_hidden(hidden_features: int, wide_silu: bool = True) -> int:
    """Reference rule: with ``wide_silu`` the hidden width is int(2h/3) rounded up to a multiple of 8."""
    if not wide_silu:
        return hidden_features
    return (int(2 * hidden_features / 3) + 7) // 8 * 8


class SwiGLUFFN(nn.Module):
    """fc3(silu(fc1 x) * fc2 x)."""

    def __init__(self, in_features: int, hidden_features: int, wide_silu: bool = True, drop: float = 0.0) -> None:
        super().__init__()
        hidden = swiglu_hidden(hidden_features, wide_silu)
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(in_features, hidden)
        self.fc3 = nn.Linear(hidden, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc3(F.silu(self.fc1(x)) * self.fc2(x)))


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection, optional RoPE on q/k and an optional K/V hook.

    ``kv_hook`` receives this call's (post-RoPE) keys/values and returns the keys/values to attend to; the
    action-conditioned predictor uses it to append to and read from its incremental cache.
    """

    def __init__(
        self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self, x: Tensor, rope: Rope | None = None, attn_mask: Tensor | None = None, kv_hook: KVHook | None = None
    ) -> Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        if kv_hook is not None:
            k, v = kv_hook(k, v)
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop if self.training else 0.0
        )
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1 x), then x + mlp(norm2 x)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        use_silu: bool = False,
        wide_silu: bool = True,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = norm_layer(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = SwiGLUFFN(dim, hidden, wide_silu, drop) if use_silu else MLP(dim, hidden, drop=drop)

    def forward(
        self, x: Tensor, rope: Rope | None = None, attn_mask: Tensor | None = None, kv_hook: KVHook | None = None
    ) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), rope, attn_mask, kv_hook))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def make_blocks(depth: int, dim: int, num_heads: int, drop_path_rate: float = 0.0, **block_kwargs) -> nn.ModuleList:
    """``depth`` blocks with drop-path linearly spaced from 0 to ``drop_path_rate``."""
    rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # python floats: works on "meta" too
    return nn.ModuleList(Block(dim, num_heads, drop_path=r, **block_kwargs) for r in rates)


def run_blocks(
    blocks: Sequence[nn.Module],
    x: Tensor,
    rope: Rope | None = None,
    attn_mask: Tensor | None = None,
    checkpointing: bool = False,
    norm: nn.Module | None = None,
    out_layers: Sequence[int] | None = None,
    kv_hooks: Sequence[KVHook] | None = None,
) -> Tensor | list[Tensor]:
    """Run ``blocks`` (optionally with activation checkpointing); with ``out_layers`` return norm(x_i) per layer.

    ``kv_hooks[i]`` is handed to block i's attention (incremental decoding; not combined with checkpointing).
    """
    outs = []
    for i, blk in enumerate(blocks):
        hook = kv_hooks[i] if kv_hooks is not None else None
        if checkpointing and hook is None and torch.is_grad_enabled():
            x = torch.utils.checkpoint.checkpoint(blk, x, rope, attn_mask, use_reentrant=False)
        else:
            x = blk(x, rope, attn_mask, hook)
        if out_layers is not None and i in out_layers:
            outs.append(norm(x) if norm is not None else x)
    return outs if out_layers is not None else x


class PatchEmbed(nn.Module):
    """Image patches: Conv2d(patch, stride patch) -> tokens [B, N, D] in raster order."""

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class PatchEmbed3D(nn.Module):
    """Video tubelets: Conv3d(tubelet x patch x patch) -> tokens [B, N, D], time-major then raster order."""

    def __init__(self, patch_size: int = 16, tubelet_size: int = 2, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def gather_tokens(x: Tensor, masks: Sequence[Tensor]) -> Tensor:
    """Keep the rows ``masks[m]`` [B, K] of x [B, N, D]; the M results are concatenated along the batch."""
    return torch.cat([torch.gather(x, 1, m.unsqueeze(-1).expand(-1, -1, x.size(-1))) for m in masks], dim=0)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Reference init: trunc-normal(std, cut at +-2) for Linear/Conv weights, zero biases, LayerNorm (1, 0)."""
    if isinstance(module, nn.Linear | nn.Conv2d | nn.Conv3d):
        nn.init.trunc_normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


@torch.no_grad()
def rescale_blocks(blocks: Sequence[Block]) -> None:
    """Divide attn.proj and mlp.fc2 weights by sqrt(2 * layer_id) (layer_id from 1; fc2 also for SwiGLU, as ref)."""
    for i, blk in enumerate(blocks, start=1):
        blk.attn.proj.weight.div_(math.sqrt(2.0 * i))
        blk.mlp.fc2.weight.div_(math.sqrt(2.0 * i))
