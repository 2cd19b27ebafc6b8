"""Process-group set-up from the torchrun (or SLURM) environment, and a sampler that resumes mid-epoch.

Single-process runs need no environment at all. Backend: nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(*names: str, default: int) -> int:
    for n in names:
        if os.environ.get(n, "").strip():
            return int(os.environ[n])
    return default


def init_distributed(device: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group described by RANK/WORLD_SIZE/LOCAL_RANK (torchrun) or SLURM_* variables.

    device: "auto" (CUDA if available), "cpu" or "cuda". Each rank uses cuda:LOCAL_RANK on GPUs.
    """
    rank = _env_int("RANK", "SLURM_PROCID", default=0)
    world = _env_int("WORLD_SIZE", "SLURM_NTASKS", default=1)
    local = _env_int("LOCAL_RANK", "SLURM_LOCALID", default=0)
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        for var in ("MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise RuntimeError(f"{var} is not set: launch multi-process runs with torchrun (or submitit)")
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    return DistInfo(rank, world, local, dev)


def cleanup() -> None:
    """End a finished run: wait for every rank first (a gloo peer torn down mid-exchange aborts the others)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over ranks (identity when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        x = x.detach().clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= dist.get_world_size()
    return x


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        x = x.detach().clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def wrap_ddp(module: torch.nn.Module, info: DistInfo, **kwargs: Any) -> torch.nn.Module:
    """`module` in DistributedDataParallel when distributed (its weights broadcast from rank 0), else itself."""
    if not info.distributed:
        return module
    ids = [info.device.index] if info.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids, **kwargs)


@torch.no_grad()
def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s parameters and buffers into every rank's `module` (a no-op when not distributed).

    For modules outside DDP that must agree across ranks, such as an EMA target: DDP broadcasts only what it wraps.
    """
    if dist.is_available() and dist.is_initialized():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src)


def gather_objects(obj: Any) -> list[Any]:
    """[obj of rank 0, obj of rank 1, ...] on every rank (a one-element list when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        out: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


class ResumableSampler(torch.utils.data.Sampler[int]):
    """DistributedSampler semantics (seeded shuffle per epoch, padded to equal shards) plus a start offset.

    `set_epoch(epoch, start_batch)` skips the batches already consumed in that epoch, so a resumed run sees
    exactly the samples an uninterrupted run would have seen.
    """

    def __init__(
        self,
        length: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        min_per_rank: int = 1,
    ):
        if length <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.length, self.rank, self.world_size = length, rank, world_size
        self.shuffle, self.seed = shuffle, seed
        self.epoch, self.start = 0, 0
        # small datasets are cycled so that every rank gets at least one full batch per pass
        self.per_rank = max(math.ceil(length / world_size), min_per_rank)

    def set_epoch(self, epoch: int, start_sample: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start_sample)

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        total = self.per_rank * self.world_size
        order += (order * math.ceil(total / self.length))[: total - self.length]
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start :])

    def __len__(self) -> int:
        return max(0, self.per_rank - self.start)
