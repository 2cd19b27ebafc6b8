"""Multi-block 3-D masks for V-JEPA pretraining (spec §4).

A generator draws one block size per batch from a generator seeded with the call index (a counter shared with the
data-loader workers, as in the reference), then places `num_blocks` boxes per sample. Masked positions are the
prediction targets, the rest is the encoder context.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields

import torch

# Generator defaults when a key is omitted from a mask config (reference values).
DEFAULTS = dict(
    spatial_scale=(0.2, 0.8),
    temporal_scale=(1.0, 1.0),
    aspect_ratio=(0.3, 3.0),
    num_blocks=1,
    max_temporal_keep=1.0,
    max_keep=None,
    full_complement=False,
    pred_full_complement=False,
    inv_block=False,
)

PLACEMENT_SEED_OFFSET = 1_000_003  # keeps the placement stream apart from the block-size stream

# The two generators used by every V-JEPA 2 pretrain and cooldown config.
VJEPA2_MASK_CFGS: tuple[dict, ...] = (
    dict(spatial_scale=(0.15, 0.15), temporal_scale=(1.0, 1.0), aspect_ratio=(0.75, 1.5), num_blocks=8),
    dict(spatial_scale=(0.7, 0.7), temporal_scale=(1.0, 1.0), aspect_ratio=(0.75, 1.5), num_blocks=2),
)


@dataclass(frozen=True)
class MaskConfig:
    """One mask generator's parameters (reference yaml names)."""

    spatial_scale: tuple[float, float] = DEFAULTS["spatial_scale"]
    temporal_scale: tuple[float, float] = DEFAULTS["temporal_scale"]
    aspect_ratio: tuple[float, float] = DEFAULTS["aspect_ratio"]
    num_blocks: int = 1
    max_temporal_keep: float = 1.0
    max_keep: int | None = None
    full_complement: bool = False
    pred_full_complement: bool = False
    inv_block: bool = False

    @classmethod
    def from_dict(cls, cfg: Mapping) -> MaskConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(cfg) - known
        if unknown:
            raise ValueError(f"unknown mask config keys {sorted(unknown)}; expected a subset of {sorted(known)}")
        kw = dict(cfg)
        for key in ("spatial_scale", "temporal_scale", "aspect_ratio"):
            if key in kw:
                lo_hi = tuple(float(v) for v in kw[key])
                if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1] or lo_hi[0] <= 0:
                    raise ValueError(f"mask config {key} must be [low, high] with 0 < low <= high, got {kw[key]}")
                kw[key] = lo_hi
        if int(kw.get("num_blocks", 1)) < 1:
            raise ValueError(f"mask config num_blocks must be >= 1, got {kw['num_blocks']}")
        if not 0 < float(kw.get("max_temporal_keep", 1.0)) <= 1.0:
            raise ValueError(f"mask config max_temporal_keep must be in (0, 1], got {kw['max_temporal_keep']}")
        return cls(**kw)


def _uniform(gen: torch.Generator, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return low + torch.rand(1, generator=gen).item() * (high - low)


class MultiBlockMaskGenerator:
    """Context/target token indices for clips of one length, on the [duration, height, width] token grid."""

    def __init__(
        self,
        cfg: MaskConfig | Mapping,
        crop_size: int | tuple[int, int] = 256,
        num_frames: int = 16,
        patch_size: int = 16,
        tubelet_size: int = 2,
        rank: int = 0,
    ) -> None:
        self.cfg = cfg if isinstance(cfg, MaskConfig) else MaskConfig.from_dict(cfg)
        crop = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
        if crop[0] % patch_size or crop[1] % patch_size or num_frames % tubelet_size:
            raise ValueError(
                f"crop {crop} must be a multiple of patch {patch_size}, frames {num_frames} of tubelet {tubelet_size}"
            )
        self.height, self.width = crop[0] // patch_size, crop[1] // patch_size
        self.duration = num_frames // tubelet_size
        self.num_tokens = self.duration * self.height * self.width
        self.max_context_duration = max(1, int(self.duration * self.cfg.max_temporal_keep))
        self.rank = int(rank)  # distributed rank: same block sizes on every rank (reference), own placements
        self._counter = mp.Value("i", 0)  # shared memory: next seed, settable from the main process
        self._worker: tuple[int, int, int] | None = None  # (pid, first seed, calls made) inside a loader worker

    def set_step(self, step: int) -> None:
        """Make the next call (and, once re-created, the data-loader workers) start at seed `step`."""
        with self._counter.get_lock():
            self._counter.value = int(step)
        self._worker = None

    def step(self) -> int:
        """Seed of this call. Main process: 0, 1, 2, ... from a counter shared with worker processes. Inside a
        data-loader worker the seed is interleaved by worker id (first + j * num_workers + id), which is the index of
        the batch that worker builds, so a batch's masks do not depend on worker timing."""
        info = torch.utils.data.get_worker_info()
        if info is None:
            with self._counter.get_lock():
                seed = self._counter.value
                self._counter.value += 1
            return seed
        pid = os.getpid()
        if self._worker is None or self._worker[0] != pid:
            self._worker = (pid, self._counter.value, 0)
        _, first, calls = self._worker
        self._worker = (pid, first, calls + 1)
        return first + calls * info.num_workers + info.id

    def block_size(self, gen: torch.Generator) -> tuple[int, int, int]:
        """(t, h, w) of the blocks for one batch: three draws from `gen`, in reference order."""
        t = max(1, int(self.duration * _uniform(gen, self.cfg.temporal_scale)))
        keep = int(self.height * self.width * _uniform(gen, self.cfg.spatial_scale))
        ar = _uniform(gen, self.cfg.aspect_ratio)
        # At least one patch: on tiny grids the reference would return empty targets (only matters below 64 px).
        h = max(1, min(int(round(math.sqrt(keep * ar))), self.height))
        w = max(1, min(int(round(math.sqrt(keep / ar))), self.width))
        return t, h, w

    def _sample_keep_map(self, size: tuple[int, int, int], gen: torch.Generator) -> torch.Tensor:
        t, h, w = size
        keep = torch.ones((self.duration, self.height, self.width), dtype=torch.int32)
        for _ in range(self.cfg.num_blocks):
            top = int(torch.randint(0, self.height - h + 1, (1,), generator=gen))
            left = int(torch.randint(0, self.width - w + 1, (1,), generator=gen))
            start = int(torch.randint(0, self.duration - t + 1, (1,), generator=gen))
            keep[start : start + t, top : top + h, left : left + w] = 0
            if self.max_context_duration < self.duration:
                keep[self.max_context_duration :] = 0
        return keep.flatten()

    def _complement(self, idx: torch.Tensor) -> torch.Tensor:
        keep = torch.ones(self.num_tokens, dtype=torch.bool)
        keep[idx] = False
        return torch.nonzero(keep).flatten()

    def __call__(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (context [B, Kc], targets [B, Kt]) int64 index tensors, ascending per row."""
        seed = self.step()
        size = self.block_size(torch.Generator().manual_seed(seed))
        # Placement: the reference draws from the global RNG; a generator keyed by (seed, call) makes the masks a
        # pure function of the call index instead (reproducible with any number of workers, and on resume).
        gen = torch.Generator().manual_seed((self.rank << 32) + PLACEMENT_SEED_OFFSET + seed)
        contexts, targets = [], []
        for _ in range(batch_size):
            while True:
                keep = self._sample_keep_map(size, gen)
                ctx = torch.nonzero(keep).flatten()
                if len(ctx) > 0:
                    break
            contexts.append(ctx)
            targets.append(torch.nonzero(keep == 0).flatten())
        n_ctx = min(len(c) for c in contexts)
        if self.cfg.max_keep is not None:
            n_ctx = min(n_ctx, int(self.cfg.max_keep))
        n_tgt = min(len(t) for t in targets)
        contexts = [c[:n_ctx] for c in contexts]
        targets = [t[:n_tgt] for t in targets]
        if self.cfg.full_complement:
            targets = [self._complement(c) for c in contexts]
        elif self.cfg.pred_full_complement:
            contexts = [self._complement(t) for t in targets]
        ctx, tgt = torch.stack(contexts), torch.stack(targets)
        return (tgt, ctx) if self.cfg.inv_block else (ctx, tgt)


def _default_collate(samples: list):
    return torch.utils.data.default_collate(samples)


def clip_length(sample: Sequence) -> int:
    """Frames per clip of a dataset sample (buffers, label, clip_indices): length of its last index array."""
    try:
        return len(sample[-1][-1])
    except (TypeError, IndexError) as exc:
        raise ValueError("mask collator expects samples shaped (clips, label, clip_indices)") from exc


class MultiSeqMaskCollator:
    """Groups a batch by clip length and attaches one (context, target) pair per mask config to each group.

    Returns a list of (collated_samples, [ctx_0, ctx_1, ...], [tgt_0, tgt_1, ...]), one entry per clip length
    present in the batch, in the order of `dataset_fpcs`.
    """

    def __init__(
        self,
        cfgs_mask: Iterable[Mapping | MaskConfig] = VJEPA2_MASK_CFGS,
        dataset_fpcs: Iterable[int] = (16,),
        crop_size: int | tuple[int, int] = 256,
        patch_size: int = 16,
        tubelet_size: int = 2,
        rank: int = 0,
    ) -> None:
        cfgs = [c if isinstance(c, MaskConfig) else MaskConfig.from_dict(c) for c in cfgs_mask]
        if not cfgs:
            raise ValueError("at least one mask config is needed")
        self.fpcs = list(dict.fromkeys(int(f) for f in dataset_fpcs))
        self.generators = {
            fpc: [MultiBlockMaskGenerator(c, crop_size, fpc, patch_size, tubelet_size, rank) for c in cfgs]
            for fpc in self.fpcs
        }

    def set_step(self, step: int) -> None:
        """Restart every generator's seed sequence at `step` (e.g. epoch * iterations_per_epoch on resume)."""
        for gens in self.generators.values():
            for g in gens:
                g.set_step(step)

    @property
    def num_mask_configs(self) -> int:
        return len(next(iter(self.generators.values())))

    def __call__(self, batch: list) -> list[tuple]:
        groups: dict[int, list] = {fpc: [] for fpc in self.fpcs}
        for sample in batch:
            fpc = clip_length(sample)
            if fpc not in groups:
                raise ValueError(f"sample with {fpc} frames per clip, but the collator only knows {self.fpcs}")
            groups[fpc].append(sample)
        out = []
        for fpc, samples in groups.items():
            if not samples:
                for gen in self.generators[fpc]:
                    gen.step()  # keep every clip length on the batch index, so a resumed run replays the masks
                continue
            masks = [gen(len(samples)) for gen in self.generators[fpc]]
            out.append((_default_collate(samples), [m[0] for m in masks], [m[1] for m in masks]))
        return out
