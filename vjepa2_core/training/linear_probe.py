"""Linear probe on frozen encoder features: does pretraining make a quantity linearly readable?

Features are the layer-normed encoder tokens averaged over space, one vector per temporal token slot; the probe is
closed-form ridge regression scored by R^2 on held-out data. Used by the pretraining representation check.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def pooled_features(encoder: nn.Module, clips: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Clips [N,3,T,H,W] -> per-tubelet features [N, T/tubelet, D] (spatial mean of layer-normed tokens)."""
    encoder.eval()
    tubelet, patch = encoder.tubelet_size, encoder.patch_size
    n, _, t, h, w = clips.shape
    out = []
    for chunk in clips.split(batch_size):
        tokens = encoder(chunk)
        tokens = F.layer_norm(tokens, (tokens.shape[-1],))
        out.append(tokens.view(len(chunk), t // tubelet, (h // patch) * (w // patch), -1).mean(2))
    return torch.cat(out)


def ridge_r2(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, lam: float = 1.0
) -> float:
    """Fit ridge regression (standardised inputs, unpenalised intercept) on train; R^2 on test (1 is perfect)."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    a_train, a_test = (x_train - mu) / sd, (x_test - mu) / sd
    y_mean = y_train.mean(0)
    w = np.linalg.solve(a_train.T @ a_train + lam * np.eye(a_train.shape[1]), a_train.T @ (y_train - y_mean))
    pred = a_test @ w + y_mean
    return float(1.0 - ((pred - y_test) ** 2).sum() / ((y_test - y_test.mean(0)) ** 2).sum())
