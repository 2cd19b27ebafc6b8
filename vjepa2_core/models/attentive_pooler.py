"""Attentive probe: learned queries cross-attend to encoder tokens (reference ``attentive_pooler.py``).

LayerNorm eps is 1e-5 here (the reference probe uses plain ``nn.LayerNorm``), unlike the 1e-6 of the backbones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .modules import MLP, Block, init_weights, rescale_blocks


class CrossAttention(nn.Module):
    """Queries from ``q``, keys/values from ``x`` (fused kv: rows [k; v]); no output projection."""

    def __init__(self, dim: int, num_heads: int = 12, qkv_bias: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)

    def forward(self, q: Tensor, x: Tensor) -> Tensor:
        B, n, C = q.shape
        hd = C // self.num_heads
        q = self.q(q).unflatten(-1, (self.num_heads, hd)).transpose(1, 2)
        k, v = self.kv(x).unflatten(-1, (2, self.num_heads, hd)).permute(2, 0, 3, 1, 4).unbind(0)
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, n, C)


class CrossAttentionBlock(nn.Module):
    """q + xattn(q, norm1(x)), then q + mlp(norm2(q)); the queries themselves are not normalised."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = False, norm_layer=None):
        super().__init__()
        norm_layer = norm_layer or nn.LayerNorm
        self.norm1 = norm_layer(dim)
        self.xattn = CrossAttention(dim, num_heads, qkv_bias)
        self.norm2 = norm_layer(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, q: Tensor, x: Tensor) -> Tensor:
        q = q + self.xattn(q, self.norm1(x))
        return q + self.mlp(self.norm2(q))


class AttentivePooler(nn.Module):
    """``depth - 1`` self-attention blocks over the tokens, then one cross-attention block for the queries."""

    def __init__(
        self,
        num_queries: int = 1,
        embed_dim: int = 768,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        depth: int = 1,
        norm_layer=nn.LayerNorm,
        init_std: float = 0.02,
        qkv_bias: bool = True,
        complete_block: bool = True,
        use_activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.use_activation_checkpointing = use_activation_checkpointing
        self.query_tokens = nn.Parameter(torch.zeros(1, num_queries, embed_dim))
        self.complete_block = complete_block
        if complete_block:
            self.cross_attention_block = CrossAttentionBlock(embed_dim, num_heads, mlp_ratio, qkv_bias, norm_layer)
        else:
            self.cross_attention_block = CrossAttention(embed_dim, num_heads, qkv_bias)
        self.blocks = None
        if depth > 1:
            self.blocks = nn.ModuleList(
                Block(embed_dim, num_heads, mlp_ratio, qkv_bias, norm_layer=norm_layer) for _ in range(depth - 1)
            )
        self.init_std = init_std
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.query_tokens, std=self.init_std)
        self.apply(lambda m: init_weights(m, self.init_std))
        rescale_blocks(self.blocks or [])
        if self.complete_block:  # the reference reuses the last block's layer id here
            self.cross_attention_block.mlp.fc2.weight.div_(math.sqrt(2.0 * max(len(self.blocks or []), 1)))

    def forward(self, x: Tensor) -> Tensor:
        """x [B, N, D] -> pooled queries [B, Q, D]."""
        for blk in self.blocks or []:
            if self.use_activation_checkpointing and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return self.cross_attention_block(self.query_tokens.expand(len(x), -1, -1), x)


class AttentiveClassifier(nn.Module):
    """Attentive pooler with one query followed by a linear head: x [B, N, D] -> logits [B, num_classes]."""

    def __init__(
        self,
        embed_dim: int = 768,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        depth: int = 1,
        norm_layer=nn.LayerNorm,
        init_std: float = 0.02,
        qkv_bias: bool = True,
        num_classes: int = 1000,
        complete_block: bool = True,
        use_activation_checkpointing: bool = False,
        **kwargs,
    ) -> None:
        super().__init__()
        self.pooler = AttentivePooler(
            1,
            embed_dim,
            num_heads,
            mlp_ratio,
            depth,
            norm_layer,
            init_std,
            qkv_bias,
            complete_block,
            use_activation_checkpointing,
        )
        self.linear = nn.Linear(embed_dim, num_classes, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3:
            raise ValueError(f"AttentiveClassifier expects tokens [B, N, D], got shape {tuple(x.shape)}")
        return self.linear(self.pooler(x).squeeze(1))
