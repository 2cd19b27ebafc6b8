"""`apply_masks` (the reference name) for gathering loss targets: validated access to the models' gather helper."""

from __future__ import annotations

import torch

from vjepa2_core.models.modules import gather_tokens


def apply_masks(x: torch.Tensor, masks: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Gather tokens: x [B,N,D], M index tensors [B,K] -> [M*B, K, D] (mask m in rows m*B..(m+1)*B-1)."""
    masks = [masks] if isinstance(masks, torch.Tensor) else list(masks)
    for m in masks:
        if m.ndim != 2 or m.shape[0] != x.shape[0]:
            raise ValueError(f"mask must be [B={x.shape[0]}, K], got {tuple(m.shape)}")
    return gather_tokens(x, [m.to(x.device) for m in masks])
