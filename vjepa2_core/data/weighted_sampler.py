"""Dataset mixing by weight (reference `datasets_weights`), resumable mid-epoch like the engine's sampler."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


class WeightedResumableSampler(torch.utils.data.Sampler[int]):
    """Draws `per_rank` indices per rank and epoch with replacement, P(i) proportional to `weights[i]`.

    The draw depends only on (seed, epoch), every rank takes its own stride of it, and
    `set_epoch(epoch, start_sample)` skips what a resumed run has already consumed.
    """

    def __init__(self, weights: Sequence[float], per_rank: int, rank: int = 0, world_size: int = 1, seed: int = 0):
        w = torch.as_tensor(list(weights), dtype=torch.float64)
        if w.ndim != 1 or len(w) == 0 or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError("weights must be a non-empty list of non-negative numbers with a positive sum")
        self.weights, self.per_rank = w, int(per_rank)
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start_sample: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start_sample)

    def indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        draws = torch.multinomial(self.weights, self.per_rank * self.world_size, replacement=True, generator=g)
        return draws[self.rank :: self.world_size].tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start :])

    def __len__(self) -> int:
        return max(0, self.per_rank - self.start)
