"""Anticipation features: encoder tokens of the observed clip plus the predictor's guess of the next tubelet.

The mask predictor was trained to fill in features at positions the encoder did not see; asking it for the
positions right after the observed clip gives a feature of the (unseen) near future, which the EK100 probe reads
together with the observed tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class AnticipativeWrapper(nn.Module):
    """clip [B,3,T,H,W] -> [B, (T/tubelet + future)*S, D]: observed tokens then `num_future` predicted tubelets."""

    def __init__(self, encoder: nn.Module, predictor: nn.Module, tubelet_size: int = 2, num_future: int = 1) -> None:
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.predictor = predictor.eval().requires_grad_(False)
        self.tubelet_size, self.num_future = tubelet_size, num_future
        self.embed_dim = encoder.embed_dim

    def train(self, mode: bool = True) -> AnticipativeWrapper:
        super().train(mode)
        self.encoder.eval()
        self.predictor.eval()
        return self

    @torch.no_grad()
    def forward(self, clip: Tensor) -> Tensor:
        B, T = clip.shape[0], clip.shape[2]
        context = self.encoder(clip)
        n_ctx = context.shape[1]
        S = n_ctx // (T // self.tubelet_size)
        grid_t = self.predictor.grid[0]
        if T // self.tubelet_size + self.num_future > grid_t:
            raise ValueError(
                f"{T} observed frames + {self.num_future} future tubelets exceed the predictor's {grid_t} time slots"
            )
        masks_x = torch.arange(n_ctx, device=clip.device).expand(B, -1)
        masks_y = torch.arange(n_ctx, n_ctx + self.num_future * S, device=clip.device).expand(B, -1)
        future = self.predictor(context, masks_x, masks_y, mask_index=0)
        return torch.cat([context, future], dim=1)
