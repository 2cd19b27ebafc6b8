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
    def _extend(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write this call's k/v after the committed tokens; return all keys/values to attend to."""
        if k.requires_grad or v.requires_grad:  # autograd: in-place writes would break the saved earlier frames
            return self._extend_functional(layer, k, v)
        need = self.length + k.shape[2]
        self.keys[layer] = buf_k = self._writable(self.keys[layer], k, need)
        self.values[layer] = buf_v = self._writable(self.values[layer], v, need)
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

    def _writable(self, buf: Tensor | None, new: Tensor, need: int) -> Tensor:
        if buf is not None and self._owned and buf.shape[2] >= need and buf.shape[0] == new.shape[0]:
            if buf.dtype == new.dtype and buf.device == new.device:
                return buf
        per_frame = new.shape[2]
        capacity = max(need, 2 * self.length, (self.max_frames or 0) * per_frame)
        B, H, _, D = new.shape
        grown = new.new_empty(B, H, capacity, D)
        if buf is not None and self.length:
            grown[:, :, : self.length] = buf[:, :, : self.length]
        return grown

    def _commit(self, frames: int, tokens: int) -> None:
        """Called once all layers have appended: the new frames become part of the cache."""
        self.length += tokens
        self.num_frames += frames
        self._owned = True  # every layer now has a private buffer
