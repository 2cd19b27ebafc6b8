"""Gathering tokens by mask indices (used for the loss targets)."""

from __future__ import annotations

import torch


def apply_masks(x: torch.Tensor, masks: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Gather tokens: x [B,N,D], M index tensors [B,K] -> [M*B, K, D] (mask m in rows m*B..(m+1)*B-1)."""
    if isinstance(masks, torch.Tensor):
        masks = [masks]
    out = []
    for m in masks:
        if m.ndim != 2 or m.shape[0] != x.shape[0]:
            raise ValueError(f"mask must be [B={x.shape[0]}, K], got {tuple(m.shape)}")
        out.append(torch.gather(x, 1, m.to(x.device).unsqueeze(-1).expand(-1, -1, x.shape[-1])))
    return torch.cat(out, dim=0)
