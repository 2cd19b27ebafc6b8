"""Film strips (start | steps | final | goal) of a closed-loop episode, shared by the evaluation and the demo."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

TILE_PX = 128
GAP_PX = 4
LABEL_PX = 18


def pick_indices(n: int, tiles: int) -> list[int]:
    """`tiles` frame indices spread evenly over n frames, always including the first and the last."""
    if n <= tiles:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, tiles)})


def film_strip(
    frames: Sequence[np.ndarray], goal: np.ndarray, labels: Sequence[str] | None = None, tiles: int = 8
) -> np.ndarray:
    """RGB uint8 strip: up to `tiles` episode frames, a wider gap, then the goal image; each tile labelled."""
    import cv2

    if len(frames) == 0:
        raise ValueError("film_strip needs at least one frame")
    idx = pick_indices(len(frames), tiles)
    names = list(labels) if labels is not None else [f"t={i}" for i in range(len(frames))]
    if len(names) != len(frames):
        raise ValueError(f"{len(names)} labels for {len(frames)} frames")

    def tile(img: np.ndarray, text: str) -> np.ndarray:
        out = np.zeros((TILE_PX + LABEL_PX, TILE_PX, 3), np.uint8)  # image above a black caption bar
        out[:TILE_PX] = cv2.resize(np.ascontiguousarray(img), (TILE_PX, TILE_PX), interpolation=cv2.INTER_NEAREST)
        cv2.putText(out, text, (4, TILE_PX + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        return out

    gap = np.full((TILE_PX + LABEL_PX, GAP_PX, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for i in idx:
        parts += [tile(frames[i], names[i]), gap]
    parts += [gap, gap, tile(goal, "goal")]
    return np.concatenate(parts, axis=1)


def save_film_strip(path: str | Path, frames: Sequence[np.ndarray], goal: np.ndarray, **kwargs) -> Path:
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    strip = film_strip(frames, goal, **kwargs)
    if not cv2.imwrite(str(path), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
