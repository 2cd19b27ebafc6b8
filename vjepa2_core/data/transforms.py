"""Image preprocessing shared by planning, training and replay (ImageNet statistics, [3,T,H,W] float layout)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def frames_to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 frames [T,H,W,3] (or one frame [H,W,3]) -> float tensor [3,T,H,W] in 0..255, validated."""
    t = torch.as_tensor(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"expected RGB frames shaped [T,H,W,3] or [H,W,3], got {tuple(t.shape)}")
    if t.shape[1] < 1 or t.shape[2] < 1:
        raise ValueError(f"empty image: {tuple(t.shape)}")
    return t.permute(3, 0, 1, 2).float()


def central_crop_box(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """(top, left, h, w) of the reference random-resized-crop fallback: aspect clamped into `ratio`, centred."""
    aspect = width / height
    if aspect < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif aspect > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def ac_preprocess(
    frames: np.ndarray | torch.Tensor,
    crop_size: int = 256,
    ratio: tuple[float, float] = (1.0, 1.0),
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Deterministic AC/DROID transform: centre crop to `ratio`, bilinear resize to crop_size, ImageNet-normalise.

    uint8 [T,H,W,3] -> float [3,T,crop,crop]. With ratio (1,1) on a square image this is the planning transform.
    """
    x = frames_to_tensor(frames)
    if device is not None:
        x = x.to(device)
    _, _, h, w = x.shape
    top, left, ch, cw = central_crop_box(h, w, ratio)
    x = x[:, :, top : top + ch, left : left + cw]
    if (ch, cw) != (crop_size, crop_size):
        x = F.interpolate(x, size=(crop_size, crop_size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1, 1) * 255.0
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1, 1) * 255.0
    return (x - mean) / std


def random_resized_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rng: np.random.Generator,
    tries: int = 10,
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of the reference AC random-resized-crop: `tries` area/log-aspect draws, else the fallback.

    With a scale above 1 (the DROID config uses 1.777) every draw fails, so the crop is `central_crop_box`.
    """
    area = height * width
    log_ratio = (np.log(min(ratio)), np.log(max(ratio)))
    for _ in range(tries):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = float(np.exp(rng.uniform(*log_ratio)))
        w = int(round(np.sqrt(target * aspect)))
        h = int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    return central_crop_box(height, width, ratio)


def ac_train_transform(
    frames: np.ndarray | torch.Tensor,
    crop_size: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rng: np.random.Generator,
    horizontal_flip: bool = False,
) -> torch.Tensor:
    """Training AC transform: one random-resized-crop box for the whole clip, resize, optional flip, normalise.

    uint8 [T,H,W,3] -> float [3,T,crop,crop]; reuses `ac_preprocess` on the cropped clip.
    """
    t = frames_to_tensor(frames)
    top, left, h, w = random_resized_crop_box(t.shape[2], t.shape[3], scale, ratio, rng)
    crop = t.permute(1, 2, 3, 0)[:, top : top + h, left : left + w]
    x = ac_preprocess(crop, crop_size, ratio=(w / h, w / h))
    if horizontal_flip and rng.random() < 0.5:
        x = x.flip(-1)
    return x


def short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """(new_h, new_w) with the short side = `short` and the long side truncated as the reference does."""
    if height <= width:
        return short, int(short * width / height)
    return int(short * height / width), short


def _resize_clip(frames: np.ndarray, short: int) -> np.ndarray:
    """uint8 [T,H,W,3] -> short side `short`, bilinear per frame (cv2 INTER_LINEAR, the reference numpy path)."""
    new_h, new_w = short_side_size(frames.shape[1], frames.shape[2], short)
    if (new_h, new_w) == frames.shape[1:3]:
        return frames
    return np.stack([cv2.resize(f, (new_w, new_h), interpolation=cv2.INTER_LINEAR) for f in frames])


def _normalise_clip(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T,H,W,3] -> float [3,T,H,W]: /255 then ImageNet mean/std."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    return (x - mean) / std


def _as_uint8_clip(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    clip = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if clip.ndim == 3:
        clip = clip[None]
    if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8 or 0 in clip.shape:
        raise ValueError(f"expected a uint8 RGB clip [T,H,W,3], got {clip.dtype} {tuple(clip.shape)}")
    return clip


def eval_video_transform(crop_size: int = 256, num_views: int = 1) -> Callable[[np.ndarray], list[torch.Tensor]]:
    """The reference evaluation / inference video transform (`make_transforms(training=False)`, spec section 8).

    Returns a callable: uint8 clip [T,H,W,3] -> list of `num_views` float tensors [3,T,crop,crop]. One view: short
    side resized to int(crop*256/224), centre crop. Several views: short side resized to crop, crops slid along the
    long side with step (long - crop) // (views - 1). The hub preprocessor is this with num_views=1.
    """
    if crop_size < 1 or num_views < 1:
        raise ValueError(f"crop_size and num_views must be >= 1, got {crop_size}, {num_views}")

    def transform(frames: np.ndarray | torch.Tensor) -> list[torch.Tensor]:
        clip = _as_uint8_clip(frames)
        if num_views == 1:
            clip = _resize_clip(clip, int(crop_size * 256 / 224))
            h, w = clip.shape[1:3]
            top, left = int(round((h - crop_size) / 2)), int(round((w - crop_size) / 2))
            return [_normalise_clip(clip[:, top : top + crop_size, left : left + crop_size])]
        clip = _resize_clip(clip, crop_size)
        h, w = clip.shape[1:3]
        step = (max(h, w) - crop_size) // (num_views - 1)
        views = []
        for i in range(num_views):
            top, left = (i * step, 0) if h > w else (0, i * step)
            views.append(_normalise_clip(clip[:, top : top + crop_size, left : left + crop_size]))
        return views

    return transform
