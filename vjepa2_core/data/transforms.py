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
    return _channels_first(frames).float()


def _channels_first(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Frames [T,H,W,3] (or [H,W,3]) -> a validated view [3,T,H,W] in their own dtype (no copy)."""
    t = torch.as_tensor(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"expected RGB frames shaped [T,H,W,3] or [H,W,3], got {tuple(t.shape)}")
    if t.shape[1] < 1 or t.shape[2] < 1:
        raise ValueError(f"empty image: {tuple(t.shape)}")
    return t.permute(3, 0, 1, 2)


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


def ac_crop_resize(
    frames: np.ndarray | torch.Tensor,
    crop_size: int = 256,
    ratio: tuple[float, float] = (1.0, 1.0),
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The geometry of `ac_preprocess` alone: uint8 [T,H,W,3] -> float [3,T,crop,crop] pixel values 0..255. With
    `device` the uint8 crop is uploaded as it is (a quarter of the float bytes) and converted there."""
    x = _channels_first(frames)
    _, _, h, w = x.shape
    top, left, ch, cw = central_crop_box(h, w, ratio)
    x = x[:, :, top : top + ch, left : left + cw]
    if device is not None:
        x = x.to(device)
    x = x.float()
    if (ch, cw) != (crop_size, crop_size):
        x = F.interpolate(x, size=(crop_size, crop_size), mode="bilinear", align_corners=False)
    return x


def encoder_view(image: np.ndarray, crop_size: int) -> np.ndarray:
    """What the planning encoder sees of one RGB frame [H,W,3], as uint8 [crop,crop,3] before normalisation (for
    people: `vjepa2-goal capture --encoder-view`)."""
    x = ac_crop_resize(image, crop_size)[:, 0]
    return x.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def ac_preprocess(
    frames: np.ndarray | torch.Tensor,
    crop_size: int = 256,
    ratio: tuple[float, float] = (1.0, 1.0),
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Deterministic AC/DROID transform: centre crop to `ratio`, bilinear resize to crop_size, ImageNet-normalise.

    uint8 [T,H,W,3] -> float [3,T,crop,crop]. With ratio (1,1) on a square image this is the planning transform.
    With `device` the crop is uploaded as it is (uint8: a quarter of the float bytes) and converted there; the
    normalisation constants are made on the device, so nothing else crosses from the host.
    """
    x = ac_crop_resize(frames, crop_size, ratio, device)
    mean, std = (_filled(values, 255.0, x.device) for values in (IMAGENET_MEAN, IMAGENET_STD))
    return (x - mean) / std


def _filled(values: tuple[float, ...], scale: float, device: torch.device) -> torch.Tensor:
    """Per-channel constants [3,1,1,1] * scale made on `device` by fills (torch.tensor(list) would copy from the
    host, a blocking copy on a GPU)."""
    return torch.cat([torch.full((1, 1, 1, 1), v, device=device) for v in values]) * scale


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


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """Float [3,T,H,W] in 0..255 -> /255 then ImageNet mean/std (the reference eval order)."""
    mean, std = (_filled(values, 1.0, x.device) for values in (IMAGENET_MEAN, IMAGENET_STD))
    return (x / 255.0 - mean) / std


def _normalise_clip(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T,H,W,3] -> float [3,T,H,W], normalised."""
    return _normalise(torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float())


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


# ----------------------------------------------------------------------------------------------------------------
# Probe training-time video transforms (reference `make_transforms(training=True)`): random-resized crop (optionally
# drifting over the clip: motion shift), flip, RandAugment with one draw per clip, random erasing per frame.
# ----------------------------------------------------------------------------------------------------------------
def _affine(x: torch.Tensor, theta: list[list[float]]) -> torch.Tensor:
    """Apply one 2x3 affine (normalised coords) to every frame of [3,T,H,W]; zeros enter from outside."""
    frames = x.permute(1, 0, 2, 3)
    grid = F.affine_grid(torch.tensor([theta], dtype=x.dtype).expand(len(frames), 2, 3), frames.shape, False)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False).permute(1, 0, 2, 3)


def _grey(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).unsqueeze(0)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: float) -> torch.Tensor:
    return (b + factor * (a - b)).clamp(0, 255)


def _sharpen(x: torch.Tensor, factor: float) -> torch.Tensor:
    kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], dtype=x.dtype) / 13.0
    frames = x.reshape(-1, 1, *x.shape[-2:])
    smooth = F.conv2d(F.pad(frames, (1, 1, 1, 1), mode="replicate"), kernel.view(1, 1, 3, 3)).view_as(x)
    return _blend(x, smooth, factor)


def _autocontrast(x: torch.Tensor) -> torch.Tensor:
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return torch.where(hi > lo, (x - lo) * 255.0 / (hi - lo).clamp(min=1e-6), x)


def _rand_op(x: torch.Tensor, name: str, level: float, sign: float) -> torch.Tensor:
    """One RandAugment op at `level` in [0, 1] on a float clip [3,T,H,W] in 0..255 (same for all frames)."""
    if name == "rotate":
        a = np.deg2rad(30.0 * level * sign)
        return _affine(x, [[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0]])
    if name in ("shear_x", "shear_y"):
        s = 0.3 * level * sign
        return _affine(x, [[1.0, s, 0.0], [0.0, 1.0, 0.0]] if name == "shear_x" else [[1.0, 0.0, 0.0], [s, 1.0, 0.0]])
    if name in ("translate_x", "translate_y"):
        d = 2 * 0.45 * level * sign
        return _affine(
            x, [[1.0, 0.0, d], [0.0, 1.0, 0.0]] if name == "translate_x" else [[1.0, 0.0, 0.0], [0.0, 1.0, d]]
        )
    factor = 1.0 + 0.9 * level * sign
    if name == "brightness":
        return _blend(x, torch.zeros_like(x), factor)
    if name == "color":
        return _blend(x, _grey(x).expand_as(x), factor)
    if name == "contrast":
        return _blend(x, _grey(x).mean().expand_as(x), factor)
    if name == "sharpness":
        return _sharpen(x, factor)
    if name == "solarize":
        thresh = 256.0 - 256.0 * level
        return torch.where(x >= thresh, 255.0 - x, x)
    if name == "posterize":
        shift = int(round(4 * level))
        return torch.floor(x / 2**shift) * 2**shift
    if name == "autocontrast":
        return _autocontrast(x)
    return x  # identity


RAND_AUGMENT_OPS = (
    "identity",
    "autocontrast",
    "rotate",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "brightness",
    "color",
    "contrast",
    "sharpness",
    "solarize",
    "posterize",
)


def rand_augment(
    x: torch.Tensor, rng: np.random.Generator, num_ops: int = 4, magnitude: float = 7.0, magnitude_std: float = 0.5
) -> torch.Tensor:
    """RandAugment ('rand-m7-n4-mstd0.5'): `num_ops` random ops, magnitude ~ N(m, std) of 10, one draw per clip."""
    for name in rng.choice(RAND_AUGMENT_OPS, size=num_ops):
        level = float(np.clip(rng.normal(magnitude, magnitude_std), 0.0, 10.0)) / 10.0
        x = _rand_op(x, str(name), level, 1.0 if rng.random() < 0.5 else -1.0)
    return x


def random_erase(x: torch.Tensor, rng: np.random.Generator, prob: float = 0.25) -> torch.Tensor:
    """Per frame, with probability `prob`, replace a random box (2-33% of the area) by N(0,1) noise ('pixel' mode)."""
    x = x.clone()
    _, t, h, w = x.shape
    for f in range(t):
        if rng.random() >= prob:
            continue
        for _ in range(10):
            area = h * w * rng.uniform(0.02, 1 / 3)
            aspect = float(np.exp(rng.uniform(np.log(0.3), np.log(1 / 0.3))))
            eh, ew = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
            if 0 < eh < h and 0 < ew < w:
                top, left = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
                noise = torch.from_numpy(rng.standard_normal((3, eh, ew)).astype(np.float32))
                x[:, f, top : top + eh, left : left + ew] = noise
                break
    return x


def _crop_resize(x: torch.Tensor, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    top, left, h, w = box
    crop = x[:, :, top : top + h, left : left + w]
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)


def _shifted_crops(x: torch.Tensor, rng: np.random.Generator, scale, ratio, size: int) -> torch.Tensor:
    """Motion shift: the crop box moves linearly from one random box to another over the clip."""
    _, t, h, w = x.shape
    a = np.asarray(random_resized_crop_box(h, w, scale, ratio, rng), dtype=np.float64)
    b = np.asarray(random_resized_crop_box(h, w, scale, ratio, rng), dtype=np.float64)
    frames = []
    for i, s in enumerate(np.linspace(0.0, 1.0, t)):
        top, left, bh, bw = np.round(a + s * (b - a)).astype(int)
        frames.append(_crop_resize(x[:, i : i + 1], (top, left, bh, bw), size))
    return torch.cat(frames, dim=1)


class ProbeTrainTransform:
    """uint8 clip [T,H,W,3] -> [one view [3,T,crop,crop]] with the reference probe-training augmentations.

    Defaults are the reference video-probe values: scale (0.08, 1), aspect (0.75, 4/3), no flip, RandAugment on,
    random erasing p 0.25, motion shift off. Every draw comes from the `rng` passed in (reproducible per sample).
    """

    def __init__(
        self,
        crop_size: int = 256,
        random_resize_scale: tuple[float, float] = (0.08, 1.0),
        random_resize_aspect_ratio: tuple[float, float] = (0.75, 4 / 3),
        horizontal_flip: bool = False,
        auto_augment: bool = True,
        reprob: float = 0.25,
        motion_shift: bool = False,
    ) -> None:
        self.crop_size = int(crop_size)
        self.scale, self.ratio = tuple(random_resize_scale), tuple(random_resize_aspect_ratio)
        self.horizontal_flip, self.auto_augment = horizontal_flip, auto_augment
        self.reprob, self.motion_shift = float(reprob), motion_shift

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> list[torch.Tensor]:
        x = frames_to_tensor(_as_uint8_clip(frames))
        if self.motion_shift:
            x = _shifted_crops(x, rng, self.scale, self.ratio, self.crop_size)
        else:
            box = random_resized_crop_box(x.shape[2], x.shape[3], self.scale, self.ratio, rng)
            x = _crop_resize(x, box, self.crop_size)
        if self.horizontal_flip and rng.random() < 0.5:
            x = x.flip(-1)
        if self.auto_augment:
            x = rand_augment(x, rng)
        x = _normalise(x)
        if self.reprob > 0:
            x = random_erase(x, rng, self.reprob)
        return [x]
