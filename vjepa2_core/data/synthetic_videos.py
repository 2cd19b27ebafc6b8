"""Small MP4 videos of moving shapes (OpenCV 'mp4v'), for tests, benchmarks and the pretraining demo.

Each video shows one bright disc bouncing on a textured background; its per-frame centre is returned so a probe
can check that learned features encode object position.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vjepa2_core.data.video import write_mp4

SHAPES = ("disc", "square", "ring")


def _draw(frame: np.ndarray, shape: str, pos: np.ndarray, radius: int, colour: tuple[int, ...]) -> None:
    x, y = int(round(pos[0])), int(round(pos[1]))
    if shape == "disc":
        cv2.circle(frame, (x, y), radius, colour, thickness=-1)
    elif shape == "ring":
        cv2.circle(frame, (x, y), radius, colour, thickness=max(1, radius // 3))
    else:
        cv2.rectangle(frame, (x - radius, y - radius), (x + radius, y + radius), colour, thickness=-1)


def moving_shape_frames(
    num_frames: int,
    size: int = 64,
    seed: int = 0,
    background_max: int = 80,
    background_cell: int = 8,
    shape: str = "disc",
    colour_range: tuple[int, int] = (150, 256),
) -> tuple[np.ndarray, np.ndarray]:
    """-> (frames uint8 [T,size,size,3] RGB, centres float32 [T,2] as (x, y) in 0..1).

    The static background is a grid of `background_cell`-pixel squares of random colours in [0, background_max):
    smaller cells and a higher maximum make a busier background, detail a probe has to look past. `shape`: the
    moving object, one of SHAPES (the same path and colour for a seed whatever the shape); its RGB channels are
    drawn from `colour_range` (low, high exclusive): a range near the background's makes a faint object."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    rng = np.random.default_rng(seed)
    cells = size // background_cell
    bg = rng.integers(0, background_max, size=(cells, cells, 3), dtype=np.uint8)
    bg = cv2.resize(bg, (size, size), interpolation=cv2.INTER_NEAREST)
    radius = max(2, size // 8)
    pos = rng.uniform(radius, size - radius, size=2)
    vel = rng.uniform(-1, 1, size=2)
    vel = vel / (np.linalg.norm(vel) + 1e-6) * rng.uniform(0.04, 0.1) * size
    colour = tuple(int(c) for c in rng.integers(colour_range[0], colour_range[1], size=3))
    frames, centres = [], []
    for _ in range(num_frames):
        frame = bg.copy()
        _draw(frame, shape, pos, radius, colour)
        frames.append(frame)
        centres.append(pos / size)
        pos = pos + vel
        for k in range(2):  # bounce off the walls
            if not radius <= pos[k] <= size - radius:
                vel[k] = -vel[k]
                pos[k] = np.clip(pos[k], radius, size - radius)
    return np.stack(frames), np.asarray(centres, dtype=np.float32)


def write_video(path: str | Path, frames: np.ndarray, fps: float = 12.0) -> Path:
    """Write RGB uint8 frames [T,H,W,3] to an MP4 ('mp4v') file, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, frames, fps)
    return path


def write_moving_shapes_dataset(
    root: str | Path,
    num_videos: int,
    num_frames: int = 32,
    size: int = 64,
    fps: float = 12.0,
    seed: int = 0,
    **style: Any,
) -> tuple[Path, list[np.ndarray]]:
    """Write `num_videos` MP4s plus a `videos.csv` list ("path label" per line) -> (csv path, per-video centres).
    `style`: keyword options of `moving_shape_frames` (background_max, background_cell, shape, colour_range)."""
    root = Path(root)
    lines, centres = [], []
    for i in range(num_videos):
        frames, c = moving_shape_frames(num_frames, size, seed * 100_003 + i, **style)
        lines.append(f"{write_video(root / f'shape_{i:04d}.mp4', frames, fps)} {i}")
        centres.append(c)
    csv = root / "videos.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv, centres
