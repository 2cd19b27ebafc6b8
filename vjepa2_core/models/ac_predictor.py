"""V-JEPA 2-AC action-conditioned predictor (checkpoint-compatible with ``VisionTransformerPredictorAC``).

Each frame contributes ``[action, state, (extrinsics), patch_0 .. patch_{g*g-1}]`` tokens; attention is block-causal
over frames. Output frame t is the prediction of frame t + 1. Besides the full forward pass the predictor has an
incremental API (``new_cache`` / ``forward_frame``) that reuses the keys/values of frames already processed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor, nn

from .ac_cache import ACCache
from .modules import (
    BackboneNorm,
    Rope,
    TableCache,
    attention_dtype,
    init_weights,
    make_blocks,
    rescale_blocks,
    rope_tables,
    run_blocks,
)
from .vision_transformer import to_2tuple


class ACPredictor(nn.Module):
    """Block-causal predictor over frame tokens conditioned on per-frame actions, states (and extrinsics)."""

    def __init__(
        self,
        img_size: int | Sequence[int] = (224, 224),
        patch_size: int = 16,
        num_frames: int = 1,
        tubelet_size: int = 2,
        embed_dim: int = 768,
        predictor_embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = BackboneNorm,
        init_std: float = 0.02,
        uniform_power: bool = True,
        use_silu: bool = False,
        wide_silu: bool = True,
        is_frame_causal: bool = True,
        use_activation_checkpointing: bool = False,
        use_rope: bool = True,
        action_embed_dim: int = 7,
        use_extrinsics: bool = False,
        **kwargs,  # swallowed like the reference
    ) -> None:
        super().__init__()
        img_h, img_w = to_2tuple(img_size)
        self.grid_height, self.grid_width = img_h // patch_size, img_w // patch_size
        self.tokens_per_frame = self.grid_height * self.grid_width
        self.grid_depth = num_frames // tubelet_size  # the reference's mask size; informative only here
        self.embed_dim = embed_dim
        self.predictor_embed_dim = predictor_embed_dim
        self.num_heads = num_heads
        self.depth = depth
        self.action_embed_dim = action_embed_dim
        self.use_extrinsics = use_extrinsics
        self.cond_tokens = 3 if use_extrinsics else 2
        self.is_frame_causal = is_frame_causal
        self.use_rope = use_rope
        self.use_activation_checkpointing = use_activation_checkpointing
        self.init_std = init_std

        self.predictor_embed = nn.Linear(embed_dim, predictor_embed_dim, bias=True)
        self.action_encoder = nn.Linear(action_embed_dim, predictor_embed_dim, bias=True)
        self.state_encoder = nn.Linear(action_embed_dim, predictor_embed_dim, bias=True)
        self.extrinsics_encoder = nn.Linear(action_embed_dim - 1, predictor_embed_dim, bias=True)  # always present
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
        # RoPE tables and masks, keyed by kind; not buffers: strict loading must see exactly the reference keys
        self._tables = TableCache()
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.apply(partial(init_weights, std=self.init_std))
        rescale_blocks(self.predictor_blocks)

    # -- cached index tensors ----------------------------------------------------------------------------------
    def _rope(self, frames: int, start: int, dtype: torch.dtype, device: torch.device) -> Rope | None:
        """RoPE tables [frames*(c+g*g), hd] for frames start..start+frames-1 in the per-frame token layout."""
        if not self.use_rope:
            return None
        return self._tables.get(
            ("rope", frames, start, dtype, device), lambda: self._build_rope(frames, start, dtype, device)
        )

    def _build_rope(self, frames: int, start: int, dtype: torch.dtype, device: torch.device) -> Rope:
        """Patch tokens rotate (t, h, w); conditioning tokens only their temporal part (h, w, rest unrotated)."""
        c, gh, gw = self.cond_tokens, self.grid_height, self.grid_width
        slot = torch.arange(c + gh * gw, device=device)
        patch = (slot - c).clamp(min=0)
        h = (patch // gw).float() * (gh / gh)  # the reference scales h by grid_size / H and w by grid_size / W
        w = (patch % gw).float() * (gh / gw)
        t = torch.arange(start, start + frames, device=device, dtype=torch.float32)
        pos = torch.stack(torch.broadcast_tensors(t[:, None], h[None], w[None]), dim=-1).flatten(0, 1)
        is_patch = (slot >= c).repeat(frames)
        rotate = torch.stack((torch.ones_like(is_patch), is_patch, is_patch), dim=-1)
        return rope_tables(pos, self.predictor_embed_dim // self.num_heads, dtype, rotate)

    def _mask(self, frames: int, past_frames: int, device: torch.device) -> Tensor | None:
        """Boolean block-causal mask [frames*tok, (past_frames+frames)*tok]: True where attention is allowed."""
        if not self.is_frame_causal or frames == 1:
            return None  # a single new frame may see every cached token and all of its own
        per_frame = self.cond_tokens + self.tokens_per_frame

        def build() -> Tensor:
            f_q = torch.arange(past_frames, past_frames + frames, device=device).repeat_interleave(per_frame)
            f_k = torch.arange(past_frames + frames, device=device).repeat_interleave(per_frame)
            return f_q[:, None] >= f_k[None, :]

        return self._tables.get(("mask", frames, past_frames, device), build)

    # -- forward -----------------------------------------------------------------------------------------------
    def _check(self, x: Tensor, actions: Tensor, states: Tensor, extrinsics: Tensor | None, frames: int | None):
        if x.ndim != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"x must be [B, T*{self.tokens_per_frame}, {self.embed_dim}], got {tuple(x.shape)}")
        B, N, _ = x.shape
        if N == 0 or N % self.tokens_per_frame:
            raise ValueError(f"x has {N} tokens, not a positive multiple of {self.tokens_per_frame} per frame")
        T = N // self.tokens_per_frame
        if frames is not None and frames != T:
            raise ValueError(f"frames={frames} but x holds {T} frames of {self.tokens_per_frame} tokens")
        want = (B, T, self.action_embed_dim)
        for name, value in (("actions", actions), ("states", states)):
            if tuple(value.shape) != want:
                raise ValueError(f"{name} must be {list(want)}, got {list(value.shape)}")
        if self.use_extrinsics:
            if extrinsics is None:
                raise ValueError("this predictor was built with use_extrinsics=True: pass extrinsics [B, T, 6]")
            if tuple(extrinsics.shape) != (B, T, self.action_embed_dim - 1):
                raise ValueError(
                    f"extrinsics must be {[B, T, self.action_embed_dim - 1]}, got {list(extrinsics.shape)}"
                )
        return B, T

    def forward(
        self,
        x: Tensor,
        actions: Tensor,
        states: Tensor,
        extrinsics: Tensor | None = None,
        frames: int | None = None,
        cache: ACCache | None = None,
    ) -> Tensor:
        """x [B, T*g*g, D_enc], actions/states [B, T, 7] (extrinsics [B, T, 6]) -> predictions [B, T*g*g, D_enc].

        With ``cache`` the T frames come after the cached ones (they attend to them) and are appended to it.
        """
        B, T = self._check(x, actions, states, extrinsics, frames)
        past = 0
        if cache is not None:
            if not self.is_frame_causal:
                raise ValueError("incremental rollout needs is_frame_causal=True")
            if cache.depth != self.depth:
                raise ValueError(f"cache has {cache.depth} layers, the predictor {self.depth}")
            if cache.batch_size not in (None, B):
                raise ValueError(f"cache holds batch {cache.batch_size} but the input has batch {B}; use expand()")
            past = cache.num_frames
        if B > 1 and x.stride(0) == 0:  # one observation broadcast to every sample: embed it once
            z = self.predictor_embed(x[:1]).expand(B, -1, -1).unflatten(1, (T, self.tokens_per_frame))
        else:
            z = self.predictor_embed(x).unflatten(1, (T, self.tokens_per_frame))
        cond = [self.action_encoder(actions), self.state_encoder(states)]
        if self.use_extrinsics:
            cond.append(self.extrinsics_encoder(extrinsics))
        tokens = torch.cat([c.unsqueeze(2) for c in cond] + [z], dim=2).flatten(1, 2)

        rope = self._rope(T, past, attention_dtype(tokens), tokens.device)
        mask = self._mask(T, past, tokens.device)
        hooks = [cache.layer(i) for i in range(self.depth)] if cache is not None else None
        tokens = run_blocks(
            self.predictor_blocks, tokens, rope, mask, self.use_activation_checkpointing, kv_hooks=hooks
        )
        if cache is not None:
            cache._commit(T, tokens.shape[1])

        out = tokens.unflatten(1, (T, self.cond_tokens + self.tokens_per_frame))[:, :, self.cond_tokens :]
        return self.predictor_proj(self.predictor_norm(out.flatten(1, 2)))

    # -- incremental API ---------------------------------------------------------------------------------------
    def new_cache(self, max_frames: int | None = None) -> ACCache:
        """An empty cache; ``max_frames`` (optional) preallocates room for that many frames."""
        return ACCache(self.depth, max_frames)

    def forward_frame(
        self,
        x_t: Tensor,
        action_t: Tensor,
        state_t: Tensor,
        cache: ACCache,
        extrinsics_t: Tensor | None = None,
    ) -> Tensor:
        """One frame x_t [B, g*g, D_enc], action_t/state_t [B, 7] -> its prediction [B, g*g, D_enc].

        Equals the last frame of ``forward`` on the whole sequence; this frame's keys/values are appended to
        ``cache`` (in place).
        """
        if action_t.ndim != 2 or state_t.ndim != 2:
            raise ValueError(f"action_t/state_t must be [B, {self.action_embed_dim}]")
        ext = extrinsics_t.unsqueeze(1) if extrinsics_t is not None else None
        return self.forward(x_t, action_t.unsqueeze(1), state_t.unsqueeze(1), ext, frames=1, cache=cache)


def vit_ac_predictor(**kwargs) -> ACPredictor:
    """Reference ``vit_ac_predictor``: mlp_ratio 4, qkv_bias, LayerNorm eps 1e-6 (the defaults here)."""
    return ACPredictor(**{"mlp_ratio": 4.0, "qkv_bias": True, **kwargs})
