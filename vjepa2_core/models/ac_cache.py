"""Key/value cache of the action-conditioned predictor, for frame-by-frame (incremental) rollouts.

The predictor is block-causal over frames, so the keys/values (after RoPE) of frames already processed never
change; a rollout step only has to run the new frame's tokens and attend to the cached ones. Buffers are
preallocated per layer and grow geometrically, so appending a frame copies only that frame (amortised).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class ACCache:
    """Per-layer keys/values [B, heads, L, head_dim] of the ``num_frames`` frames seen so far.

    ``expand(batch)`` broadcasts a batch-1 cache to ``batch`` rows as a view (no copy); the first append to such a
    view materialises it. Buffers of views are never written in place, so the source cache stays valid.
    """

    def __init__(self, depth: int, max_frames: int | None = None) -> None:
        self.depth = depth
        self.max_frames = max_frames  # capacity hint: preallocate this many frames on the first append
        self.keys: list[Tensor | None] = [None] * depth
        self.values: list[Tensor | None] = [None] * depth
        self.length = 0  # committed tokens
        self.num_frames = 0
        self._owned = True  # False: buffers are shared with another cache (views) and must not be written

    # -- info ------------------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int | None:
        return None if self.keys[0] is None else self.keys[0].shape[0]

    @property
    def tokens_per_frame(self) -> int | None:
        return self.length // self.num_frames if self.num_frames else None

    def __repr__(self) -> str:
        return f"ACCache(num_frames={self.num_frames}, batch={self.batch_size}, tokens={self.length})"

    # -- derived caches --------------------------------------------------------------------------------------
    def _derive(self, fn, owned: bool) -> ACCache:
        out = ACCache(self.depth, self.max_frames)
        out.length, out.num_frames, out._owned = self.length, self.num_frames, owned
        if self.keys[0] is not None:
            out.keys = [fn(k[:, :, : self.length]) for k in self.keys]
            out.values = [fn(v[:, :, : self.length]) for v in self.values]
        return out

    def expand(self, batch: int) -> ACCache:
        """A view of this batch-1 cache with ``batch`` rows (no copy)."""
        if self.batch_size not in (None, 1, batch):
            raise ValueError(f"expand({batch}) needs a batch-1 cache, this one has batch {self.batch_size}")
        return self._derive(lambda t: t.expand(batch, -1, -1, -1), owned=False)

    def select(self, index: int | slice | Sequence[int] | Tensor) -> ACCache:
        """Rows ``index`` of the batch (a slice gives a view, anything else a copy)."""
        if isinstance(index, slice):
            return self._derive(lambda t: t[index], owned=False)
        if isinstance(index, int):
            index = [index]
        index = torch.as_tensor(index, dtype=torch.long)
        if self.keys[0] is not None and self.batch_size is not None:
            bad = (index >= self.batch_size) | (index < -self.batch_size)
            if bool(bad.any()):
                raise IndexError(f"select: index out of range for a cache of batch {self.batch_size}")
        return self._derive(lambda t: t.index_select(0, index.to(t.device) % t.shape[0]), owned=True)

    def clone(self) -> ACCache:
        """An independent copy (later appends to either cache do not affect the other)."""
        return self._derive(lambda t: t.clone(memory_format=torch.contiguous_format), owned=True)

    # -- appending (used by ACPredictor) ---------------------------------------------------------------------
    def layer(self, index: int) -> CacheLayer:
        """Layer ``index`` as the attention's K/V hook."""
        return CacheLayer(self, index)

    def _extend(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write this call's k/v after the committed tokens; return all keys/values to attend to."""
        if k.requires_grad or v.requires_grad:  # autograd: in-place writes would break the saved earlier frames
            return self._extend_functional(layer, k, v)
        need = self.length + k.shape[2]
        buf_k, buf_v = self.reserve(layer, k)
        buf_k[:, :, self.length : need] = k
        buf_v[:, :, self.length : need] = v
        return buf_k[:, :, :need], buf_v[:, :, :need]

    def _extend_functional(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Differentiable append (gradient planners): new tensors by concatenation instead of buffer writes."""
        if self.length:
            k = torch.cat([self.keys[layer][:, :, : self.length].expand(k.shape[0], -1, -1, -1), k], dim=2)
            v = torch.cat([self.values[layer][:, :, : self.length].expand(v.shape[0], -1, -1, -1), v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def reserve(self, layer: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """Writable, contiguous key/value buffers [B, heads, >= length + tokens, head_dim] of ``layer`` holding the
        committed tokens, for ``like`` [B, heads, tokens, head_dim] new ones (the new keys, or a view of their
        shape, dtype and device). The caller writes them after the first ``length`` tokens (fused kernels do)."""
        need = self.length + like.shape[2]
        self.keys[layer] = buf_k = self._writable(self.keys[layer], like, need)
        self.values[layer] = buf_v = self._writable(self.values[layer], like, need)
        return buf_k, buf_v

    def _writable(self, buf: Tensor | None, like: Tensor, need: int) -> Tensor:
        B, H, per_frame, D = like.shape
        if buf is not None and self._owned and buf.shape[2] >= need and buf.shape[0] == B and buf.is_contiguous():
            if buf.dtype == like.dtype and buf.device == like.device:
                return buf
        capacity = max(need, 2 * self.length, (self.max_frames or 0) * per_frame)
        grown = like.new_empty(B, H, capacity, D)
        if buf is not None and self.length:
            grown[:, :, : self.length] = buf[:, :, : self.length]
        return grown

    def _commit(self, frames: int, tokens: int) -> None:
        """Called once all layers have appended: the new frames become part of the cache."""
        self.length += tokens
        self.num_frames += frames
        self._owned = True  # every layer now has a private buffer


class CacheLayer:
    """One layer of an ACCache as an attention K/V hook: called with this step's keys/values it appends them and
    returns all keys/values to attend to; fused kernels instead ``reserve`` the buffers and write the keys/values
    themselves (the cache's ``length`` committed tokens come first)."""

    __slots__ = ("cache", "index")

    def __init__(self, cache: ACCache, index: int) -> None:
        self.cache, self.index = cache, index

    def __call__(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        return self.cache._extend(self.index, k, v)

    def reserve(self, like: Tensor) -> tuple[Tensor, Tensor]:
        return self.cache.reserve(self.index, like)

    @property
    def length(self) -> int:
        return self.cache.length
