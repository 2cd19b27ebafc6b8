"""V-JEPA 2 mask-feature predictor (checkpoint-compatible with the reference ``VisionTransformerPredictor``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor, nn

from .modules import (
    BackboneNorm,
    attention_dtype,
    grid_positions,
    init_weights,
    make_blocks,
    rescale_blocks,
    rope_tables,
    run_blocks,
    sincos_2d,
    sincos_3d,
)
from .vision_transformer import to_2tuple


def _single_mask(masks: Tensor | Sequence[Tensor], name: str) -> Tensor:
    if isinstance(masks, Tensor):
        return masks
    if len(masks) != 1:
        raise ValueError(f"{name}: the predictor takes exactly one mask per call (got a list of {len(masks)})")
    return masks[0]


def _gather(x: Tensor, index: Tensor) -> Tensor:
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


class MaskedPredictor(nn.Module):
    """Predicts encoder features at target positions from context tokens.

    Context tokens are embedded to the predictor width, a learned mask token (``mask_index`` mod the number of mask
    tokens) is placed at every target position, all tokens are sorted by grid position and run through the blocks
    with RoPE on the *configured* grid (``img_size // patch_size``), and the target outputs are projected back to
    the encoder width.
    """

    def __init__(
        self,
        img_size: int | Sequence[int] = (224, 224),
        patch_size: int = 16,
        num_frames: int = 1,
        tubelet_size: int = 2,
        embed_dim: int = 768,
        predictor_embed_dim: int = 384,
        depth: int = 6,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = BackboneNorm,
        init_std: float = 0.02,
        uniform_power: bool = False,
        use_mask_tokens: bool = False,
        num_mask_tokens: int = 2,
        zero_init_mask_tokens: bool = True,
        use_silu: bool = False,
        wide_silu: bool = True,
        use_activation_checkpointing: bool = False,
        return_all_tokens: bool = False,
        chop_last_n_tokens: int = 0,
        use_rope: bool = False,
        **kwargs,  # swallowed like the reference (e.g. use_sdpa)
    ) -> None:
        super().__init__()
        if use_rope and not use_mask_tokens:
            raise ValueError("use_rope=True needs use_mask_tokens=True (targets would have no position signal)")
        if chop_last_n_tokens and not return_all_tokens:
            raise ValueError("chop_last_n_tokens > 0 only works with return_all_tokens=True (as in the reference)")
        self.img_height, self.img_width = to_2tuple(img_size)
        self.patch_size = patch_size
        self.is_video = num_frames > 1
        grid_t = num_frames // tubelet_size if self.is_video else 1
        self.grid = (grid_t, self.img_height // patch_size, self.img_width // patch_size)
        self.num_patches = grid_t * self.grid[1] * self.grid[2]
        self.embed_dim = embed_dim
        self.predictor_embed_dim = predictor_embed_dim
        self.num_heads = num_heads
        self.uniform_power = uniform_power
        self.use_rope = use_rope
        self.return_all_tokens = return_all_tokens
        self.chop_last_n_tokens = chop_last_n_tokens
        self.use_activation_checkpointing = use_activation_checkpointing
        self.init_std = init_std
        self.zero_init_mask_tokens = zero_init_mask_tokens

        self.predictor_embed = nn.Linear(embed_dim, predictor_embed_dim, bias=True)
        self.num_mask_tokens = num_mask_tokens if use_mask_tokens else 0
        self.mask_tokens = None
        if use_mask_tokens:
            self.mask_tokens = nn.ParameterList(
                nn.Parameter(torch.zeros(1, 1, predictor_embed_dim)) for _ in range(num_mask_tokens)
            )
        self.predictor_pos_embed = None
        if not use_rope:
            self.predictor_pos_embed = nn.Parameter(
                torch.zeros(1, self.num_patches, predictor_embed_dim), requires_grad=False
            )
        self.predictor_blocks = make_blocks(
            depth,
            predictor_embed_dim,
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
        self.predictor_norm = norm_layer(predictor_embed_dim)
        self.predictor_proj = nn.Linear(predictor_embed_dim, embed_dim, bias=True)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.predictor_pos_embed is not None:
            t, h, w = self.grid
            d = self.predictor_embed_dim
            table = sincos_3d(d, t, h, w, self.uniform_power) if self.is_video else sincos_2d(d, h, w)
            self.predictor_pos_embed.copy_(table.unsqueeze(0))
        if self.mask_tokens is not None and not self.zero_init_mask_tokens:
            for token in self.mask_tokens:
                nn.init.trunc_normal_(token, std=self.init_std)
        self.apply(partial(init_weights, std=self.init_std))
        rescale_blocks(self.predictor_blocks)

    def forward(
        self,
        x: Tensor,
        masks_x: Tensor | Sequence[Tensor],
        masks_y: Tensor | Sequence[Tensor],
        mask_index: int | Tensor = 1,
        has_cls: bool = False,
    ) -> Tensor:
        """x [B, Nc, D_enc] context features; masks_x [B, Nc], masks_y [B, Nt] grid indices -> [B, Nt, D_enc]."""
        if has_cls:
            raise ValueError("has_cls=True is not supported: V-JEPA 2 encoders have no class token")
        masks_x = _single_mask(masks_x, "masks_x").to(x.device)
        masks_y = _single_mask(masks_y, "masks_y").to(x.device)
        B, n_ctx = x.shape[:2]
        if masks_x.shape != (B, n_ctx):
            raise ValueError(f"masks_x shape {tuple(masks_x.shape)} does not match context tokens {(B, n_ctx)}")
        if masks_y.ndim != 2 or masks_y.shape[0] != B:
            raise ValueError(f"masks_y must be [B={B}, Nt], got {tuple(masks_y.shape)}")
        n_tgt = masks_y.shape[1]

        x = self.predictor_embed(x)
        dim = x.shape[-1]
        pos = None
        if self.predictor_pos_embed is not None:
            limit = int(max(masks_x.max(), masks_y.max())) if masks_x.numel() + masks_y.numel() else -1
            if limit >= self.num_patches:
                raise ValueError(f"mask index {limit} out of range for {self.num_patches} patches")
            pos = self.predictor_pos_embed.expand(B, -1, -1)
            x = x + _gather(pos, masks_x)
        if self.mask_tokens is not None:
            targets = self.mask_tokens[int(mask_index) % self.num_mask_tokens].expand(B, n_tgt, dim)
            if pos is not None:
                targets = targets + _gather(pos, masks_y)
        else:
            targets = _gather(pos, masks_y)
        x = torch.cat((x, targets), dim=1)
        index = torch.cat((masks_x, masks_y), dim=1)

        order = torch.argsort(index, dim=1)
        index = torch.gather(index, 1, order)
        x = _gather(x, order)
        if self.chop_last_n_tokens > 0:
            x, index = x[:, : -self.chop_last_n_tokens], index[:, : -self.chop_last_n_tokens]

        rope = None
        if self.use_rope:
            _, gh, gw = self.grid
            head_dim = self.predictor_embed_dim // self.num_heads
            # the reference predictor assumes a square grid of img_size[0] // patch_size
            cos, sin = rope_tables(grid_positions(index, gh, gh), head_dim, attention_dtype(x))
            rope = cos.unsqueeze(1), sin.unsqueeze(1)
        x = run_blocks(self.predictor_blocks, x, rope, checkpointing=self.use_activation_checkpointing)
        x = self.predictor_norm(x)
        if self.return_all_tokens:
            return self.predictor_proj(x)
        x = _gather(x, torch.argsort(order, dim=1))[:, n_ctx:]
        return self.predictor_proj(x)


def vit_predictor(**kwargs) -> MaskedPredictor:
    """Reference ``vit_predictor``: mlp_ratio 4, qkv_bias, LayerNorm eps 1e-6."""
    return MaskedPredictor(**{"mlp_ratio": 4.0, "qkv_bias": True, **kwargs})
