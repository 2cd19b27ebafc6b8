"""Pretraining clip augmentation: one random-resized crop and flip per clip, then ImageNet normalisation (spec §5).

Random draws use the global torch RNG so that data-loader worker seeding makes them reproducible.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from vjepa2_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD, central_crop_box, frames_to_tensor


def random_resized_crop_box(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], tries: int = 10
) -> tuple[int, int, int, int]:
    """(top, left, h, w): area fraction ~ U(scale), aspect log-uniform in ratio; central fallback after `tries`."""
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(tries):
        area = height * width * (scale[0] + torch.rand(1).item() * (scale[1] - scale[0]))
        aspect = math.exp(log_lo + torch.rand(1).item() * (log_hi - log_lo))
        w = int(round(math.sqrt(area * aspect)))
        h = int(round(math.sqrt(area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,)))
            left = int(torch.randint(0, width - w + 1, (1,)))
            return top, left, h, w
    return central_crop_box(height, width, ratio)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Float [3,T,H,W] in 0..255 -> ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(3, 1, 1, 1) * 255.0
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(3, 1, 1, 1) * 255.0
    return (x - mean) / std


class VideoTrainTransform:
    """uint8 frames [T,H,W,3] -> float [3,T,crop,crop]: random-resized crop, horizontal flip, normalisation."""

    def __init__(
        self,
        crop_size: int = 256,
        random_resize_scale: tuple[float, float] = (0.3, 1.0),
        random_resize_aspect_ratio: tuple[float, float] = (0.75, 1.35),
        horizontal_flip: bool = True,
    ) -> None:
        if crop_size <= 0 or not 0 < random_resize_scale[0] <= random_resize_scale[1]:
            raise ValueError(f"bad crop_size {crop_size} or random_resize_scale {random_resize_scale}")
        self.crop_size = crop_size
        self.scale = tuple(random_resize_scale)
        self.ratio = tuple(random_resize_aspect_ratio)
        self.horizontal_flip = horizontal_flip

    def __call__(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = frames_to_tensor(frames)
        _, _, h, w = x.shape
        top, left, ch, cw = random_resized_crop_box(h, w, self.scale, self.ratio)
        x = x[:, :, top : top + ch, left : left + cw]
        x = F.interpolate(x, size=(self.crop_size, self.crop_size), mode="bilinear", align_corners=False)
        if self.horizontal_flip and torch.rand(1).item() < 0.5:
            x = x.flip(-1)
        return normalize(x)
