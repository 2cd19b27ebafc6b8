"""V-JEPA 2 video ViT encoder (checkpoint-compatible with the reference ``VisionTransformer``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .modules import (
    BackboneNorm,
    PatchEmbed,
    PatchEmbed3D,
    Rope,
    TableCache,
    attention_dtype,
    gather_tokens,
    grid_positions,
    init_weights,
    make_blocks,
    rescale_blocks,
    rope_tables,
    run_blocks,
    sincos_2d,
    sincos_3d,
)


def to_2tuple(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class VisionTransformer(nn.Module):
    """Video (num_frames > 1: Conv3d tubelets) or image (Conv2d) ViT with 3-D RoPE or a fixed sin-cos table.

    ``forward(x [B,3,T,H,W], masks=None)``: masks is one [B,K] tensor or a list of M tensors of token indices to keep;
    the kept tokens of every mask are stacked along the batch -> [M*B, K, D]. With ``out_layers`` the forward returns
    the list of ``norm(x_i)`` for those block indices instead of the final output.

    Deviation: ``norm_layer`` defaults to LayerNorm(eps=1e-6), the value of every reference size function, release
    and fixture (the bare reference constructor would use 1e-5).
    """

    def __init__(
        self,
        img_size: int | Sequence[int] = (224, 224),
        patch_size: int = 16,
        num_frames: int = 1,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = BackboneNorm,
        init_std: float = 0.02,
        out_layers: Sequence[int] | None = None,
        uniform_power: bool = False,
        use_silu: bool = False,
        wide_silu: bool = True,
        use_sdpa: bool = True,
        use_activation_checkpointing: bool = False,
        use_rope: bool = False,
        handle_nonsquare_inputs: bool = True,
        **kwargs,  # the reference silently swallows unknown arguments; so do we
    ) -> None:
        super().__init__()
        self.img_height, self.img_width = to_2tuple(img_size)
        self.patch_size = patch_size
        self.num_frames = num_frames
        self.tubelet_size = tubelet_size
        self.is_video = num_frames > 1
        self.embed_dim = self.num_features = embed_dim
        self.num_heads = num_heads
        self.out_layers = out_layers
        self.use_rope = use_rope
        self.uniform_power = uniform_power
        self.handle_nonsquare_inputs = handle_nonsquare_inputs
        self.use_activation_checkpointing = use_activation_checkpointing
        self.init_std = init_std

        if self.is_video:
            self.patch_embed = PatchEmbed3D(patch_size, tubelet_size, in_chans, embed_dim)
            grid_t = num_frames // tubelet_size
        else:
            self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
            grid_t = 1
        self.grid = (grid_t, self.img_height // patch_size, self.img_width // patch_size)
        self.num_patches = grid_t * self.grid[1] * self.grid[2]

        self.pos_embed = None
        if not use_rope:
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, embed_dim), requires_grad=False)
        self.blocks = make_blocks(
            depth,
            embed_dim,
            num_heads,
            drop_path_rate,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop=drop_rate,
            attn_drop=drop_rate,
            norm_layer=norm_layer,
            use_silu=use_silu,
            wide_silu=wide_silu,
        )
        self.norm = norm_layer(embed_dim)
        self._rope_cache = TableCache(max_entries=16)
        self.reset_parameters()

    # -- init ----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Reference training init (fixed sin-cos table, trunc-normal weights, depth-rescaled projections)."""
        if self.pos_embed is not None:
            self.pos_embed.copy_(self._sincos_table())
        self.apply(partial(init_weights, std=self.init_std))
        rescale_blocks(self.blocks)

    def _sincos_table(self) -> Tensor:
        t, h, w = self.grid
        if self.is_video:
            return sincos_3d(self.embed_dim, t, h, w, self.uniform_power).unsqueeze(0)
        return sincos_2d(self.embed_dim, h, w).unsqueeze(0)

    # -- positions -----------------------------------------------------------------------------------------------
    def interpolate_pos_encoding(self, x: Tensor, pos_embed: Tensor) -> Tensor:
        """Resize the sin-cos table to the input: truncate when only T is shorter, else trilinear/bicubic."""
        grid_t, grid_h, grid_w = self.grid
        H, W = x.shape[-2:]
        if self.is_video:
            T = x.shape[2]
            if (H, W) == (self.img_height, self.img_width) and T <= self.num_frames:
                return pos_embed[:, : (T // self.tubelet_size) * grid_h * grid_w]
            size = (T // self.tubelet_size, H // self.patch_size, W // self.patch_size)
            table = pos_embed.reshape(1, grid_t, grid_h, grid_w, -1).permute(0, 4, 1, 2, 3)
            table = F.interpolate(table, size=size, mode="trilinear")
            return table.permute(0, 2, 3, 4, 1).flatten(1, 3)
        if (H, W) == (self.img_height, self.img_width):
            return pos_embed
        table = pos_embed.reshape(1, grid_h, grid_w, -1).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=(H // self.patch_size, W // self.patch_size), mode="bicubic")
        return table.permute(0, 2, 3, 1).flatten(1, 2)

    def _rope(
        self, index: Tensor | None, num_tokens: int, grid_hw: tuple[int, int], dtype: torch.dtype, device
    ) -> Rope:
        """RoPE tables for tokens 0..num_tokens-1 (cached) or for kept indices [M*B, K] (-> [M*B, 1, K, hd])."""
        head_dim = self.embed_dim // self.num_heads
        gh, gw = grid_hw
        if index is not None:
            cos, sin = rope_tables(grid_positions(index, gh, gw), head_dim, dtype)
            return cos.unsqueeze(1), sin.unsqueeze(1)

        def build() -> Rope:
            return rope_tables(grid_positions(torch.arange(num_tokens, device=device), gh, gw), head_dim, dtype)

        return self._rope_cache.get((num_tokens, grid_hw, dtype, device), build)

    # -- forward -------------------------------------------------------------------------------------------------
    def _check_input(self, x: Tensor) -> None:
        want = 5 if self.is_video else 4
        if x.ndim != want:
            kind = "video [B,C,T,H,W]" if self.is_video else "image [B,C,H,W]"
            hint = " (repeat an image along time to tubelet_size frames)" if self.is_video else ""
            raise ValueError(f"{type(self).__name__} expects a {kind} tensor, got shape {tuple(x.shape)}{hint}")
        H, W = x.shape[-2:]
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"H, W = {H}, {W} must be multiples of patch_size {self.patch_size}")
        if self.is_video and (x.shape[2] < self.tubelet_size or x.shape[2] % self.tubelet_size):
            raise ValueError(f"T = {x.shape[2]} must be a positive multiple of tubelet_size {self.tubelet_size}")

    def forward(self, x: Tensor, masks: Tensor | Sequence[Tensor] | None = None) -> Tensor | list[Tensor]:
        self._check_input(x)
        if masks is not None and isinstance(masks, Tensor):
            masks = [masks]
        H, W = x.shape[-2:]
        if self.handle_nonsquare_inputs:
            grid_hw = (H // self.patch_size, W // self.patch_size)
        else:  # reference square assumption: the configured grid for rows and columns
            grid_hw = (self.img_height // self.patch_size,) * 2

        tokens = self.patch_embed(x)
        if self.pos_embed is not None:
            tokens = tokens + self.interpolate_pos_encoding(x, self.pos_embed)
        index = None
        if masks is not None:
            masks = [m.to(tokens.device) for m in masks]
            tokens = gather_tokens(tokens, masks)
            index = torch.cat(masks, dim=0)
        rope = None
        if self.use_rope:
            rope = self._rope(index, tokens.shape[1], grid_hw, attention_dtype(tokens), tokens.device)
        out = run_blocks(
            self.blocks,
            tokens,
            rope,
            checkpointing=self.use_activation_checkpointing,
            norm=self.norm,
            out_layers=self.out_layers,
        )
        return out if self.out_layers is not None else self.norm(out)


# ----------------------------------------------------------------------------------------------------------------
# Sizes (reference size functions: qkv_bias, LayerNorm eps 1e-6). "vit_giant" here is the released 22-head ViT-g.
# ----------------------------------------------------------------------------------------------------------------
ENCODER_SIZES: dict[str, dict] = {
    "vit_tiny": dict(embed_dim=192, depth=12, num_heads=3, mlp_ratio=4.0),
    "vit_small": dict(embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0),
    "vit_base": dict(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0),
    "vit_large": dict(embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0),
    "vit_huge": dict(embed_dim=1280, depth=32, num_heads=16, mlp_ratio=4.0),
    "vit_giant": dict(embed_dim=1408, depth=40, num_heads=22, mlp_ratio=48 / 11),
    "vit_giant_xformers": dict(embed_dim=1408, depth=40, num_heads=22, mlp_ratio=48 / 11),
}


def _sized(name: str, **kwargs) -> VisionTransformer:
    return VisionTransformer(**{**ENCODER_SIZES[name], **kwargs})


def vit_tiny(**kwargs) -> VisionTransformer:
    return _sized("vit_tiny", **kwargs)


def vit_small(**kwargs) -> VisionTransformer:
    return _sized("vit_small", **kwargs)


def vit_base(**kwargs) -> VisionTransformer:
    return _sized("vit_base", **kwargs)


def vit_large(**kwargs) -> VisionTransformer:
    return _sized("vit_large", **kwargs)


def vit_huge(**kwargs) -> VisionTransformer:
    return _sized("vit_huge", **kwargs)


def vit_giant(**kwargs) -> VisionTransformer:
    """Released ViT-g: 1408 wide, 40 blocks, 22 heads of 64 (the reference ``vit_giant_xformers``)."""
    return _sized("vit_giant", **kwargs)


vit_giant_xformers = vit_giant


def vit_giant_384(**kwargs) -> VisionTransformer:
    """ViT-g for the 384-px release (same weights layout, img_size 384)."""
    return _sized("vit_giant", **{"img_size": 384, **kwargs})
