"""Labelled synthetic data for probe checks, built on the moving-shape generator (`synthetic_videos`).

- direction-of-motion videos: the disc's travel direction binned into `num_classes` sectors. A single frame
  cannot tell it, so a probe that beats chance must read time. Clips with a wall bounce are skipped, so the
  label holds for the whole video.
- position images (ImageNet-style class folders): which quadrant the disc is in; shape images: disc, square
  or ring, anywhere.
- a tiny EPIC-KITCHENS-100-layout anticipation set: verb = motion direction at the action start, noun = the
  disc's dominant colour channel.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vjepa2_core.data.ek100 import EK100_COLUMNS
from vjepa2_core.data.synthetic_videos import SHAPES, moving_shape_frames, write_video


def direction_class(displacement: np.ndarray, num_classes: int = 8) -> int:
    """Sector of the (x, y) displacement angle: 0 = rightwards, counter-clockwise in image coordinates."""
    angle = np.arctan2(-displacement[1], displacement[0]) % (2 * np.pi)
    return int(np.floor(angle / (2 * np.pi / num_classes) + 0.5)) % num_classes


def straight_clip(num_frames: int, size: int, seed: int, **style: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """A moving-shape clip whose disc never bounces (constant displacement), or None. `style`: keyword options of
    `moving_shape_frames`."""
    frames, centres = moving_shape_frames(num_frames, size, seed=seed, **style)
    steps = np.diff(centres, axis=0)
    return (frames, steps[0]) if np.allclose(steps, steps[0], atol=1e-6) else None


def add_pixel_noise(frames: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Independent Gaussian noise per pixel and frame: detail no model can predict, which a good encoder ignores."""
    if std <= 0:
        return frames
    return np.clip(frames + rng.normal(0.0, std, size=frames.shape), 0, 255).astype(np.uint8)


def write_direction_dataset(
    root: str | Path,
    num_videos: int,
    num_frames: int = 16,
    size: int = 64,
    num_classes: int = 8,
    seed: int = 0,
    noise_std: float = 0.0,
    hold: int = 1,
    **style: Any,
) -> Path:
    """`num_videos` non-bouncing MP4s and `videos.csv` ("path label", label = direction sector), optionally with
    per-frame pixel noise of `noise_std` grey levels. `hold=2` shows every frame twice: each (aligned) 2-frame
    tubelet is then a still image, and motion is only visible across tubelets. `style`: keyword options of
    `moving_shape_frames` (a busier background, a fainter disc)."""
    root = Path(root)
    lines, k, counts = [], 0, np.zeros(num_classes, int)
    quota = -(-num_videos // num_classes)  # balanced classes: chance is 1 / num_classes
    while len(lines) < num_videos:
        clip = straight_clip(num_frames, size, seed=seed * 1_000_003 + k, **style)
        k += 1
        if clip is None or counts[label := direction_class(clip[1], num_classes)] >= quota:
            continue
        counts[label] += 1
        frames = add_pixel_noise(np.repeat(clip[0], hold, axis=0), noise_std, np.random.default_rng([seed, k]))
        path = write_video(root / f"dir_{len(lines):04d}.mp4", frames)
        lines.append(f"{path.name} {label}")
    csv_path = root / "videos.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    return csv_path


def write_quadrant_images(root: str | Path, num_images: int, size: int = 64, seed: int = 0) -> Path:
    """`root/q{0..3}/img_XXXX.png`: one moving-shape frame per image, class = the disc's quadrant."""
    root = Path(root)
    for i in range(num_images):
        frames, centres = moving_shape_frames(1, size, seed=seed * 1_000_003 + i)
        q = int(centres[0, 0] >= 0.5) + 2 * int(centres[0, 1] >= 0.5)
        (root / f"q{q}").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / f"q{q}" / f"img_{i:04d}.png"), cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))
    return root


def write_shape_images(
    root: str | Path,
    num_images: int,
    size: int = 64,
    seed: int = 0,
    **style: Any,
) -> Path:
    """`root/<shape>/img_XXXX.png`, balanced over SHAPES (disc, square, ring) at random positions and colours: a
    content label that holds anywhere in the image (RoPE tokens carry no absolute position, so a quadrant label
    cannot be read from them). `style`: further keyword options of `moving_shape_frames`."""
    root = Path(root)
    for i in range(num_images):
        shape = SHAPES[i % len(SHAPES)]
        frames, _ = moving_shape_frames(1, size, seed * 1_000_003 + i, shape=shape, **style)
        (root / shape).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / shape / f"img_{i:04d}.png"), cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))
    return root


def _timestamp(seconds: float) -> str:
    return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}:{seconds % 60:05.2f}"


def write_ek100_toy(
    root: str | Path,
    split: str,
    num_videos: int,
    num_frames: int = 16,
    fps: float = 8.0,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Videos `root/P01/videos/P01_XXX.MP4` plus `root/EPIC_100_<split>.csv` with the EK100 columns; one action
    per video, starting at the last-but-one frame."""
    root = Path(root)
    rows = []
    for i in range(num_videos):
        frames, centres = moving_shape_frames(num_frames, size, seed=seed * 1_000_003 + i)
        start_frame = num_frames - 2
        verb = direction_class(centres[start_frame + 1] - centres[start_frame])
        pixels = frames[0].reshape(-1, 3)
        noun = int(np.argmax(pixels[pixels.astype(int).sum(-1).argmax()]))  # the disc is the brightest pixel
        video_id = f"P01_{split}{i:03d}"
        write_video(root / "P01" / "videos" / f"{video_id}.MP4", frames, fps)
        start = start_frame / fps
        rows.append(
            [f"{video_id}_0", "P01", video_id, _timestamp(start), _timestamp(start), _timestamp(start + 1 / fps)]
        )
        rows[-1] += [start_frame, start_frame + 1, "move", "move", verb, "disc", noun, "['disc']", f"[{noun}]"]
    path = root / f"EPIC_100_{split}.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(EK100_COLUMNS)
        writer.writerows(rows)
    return path
