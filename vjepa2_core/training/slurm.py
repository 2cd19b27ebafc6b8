"""Optional SLURM submission with submitit (`pip install .[slurm]`): one task per GPU, requeued on preemption.

Each task exports the torch.distributed variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) from the SLURM
environment, then runs the same `train(cfg, resume=True)` as torchrun would, so a requeued job resumes from
`<folder>/latest.pt`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path


class TrainTask:
    """Picklable callable that submitit runs on every task; `checkpoint` makes preemption requeue it."""

    def __init__(self, train_fn: Callable[..., dict], cfg: dict):
        self.train_fn, self.cfg = train_fn, cfg

    def __call__(self) -> dict:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        return self.train_fn(self.cfg, resume=True)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(TrainTask(self.train_fn, self.cfg))


def _mem_gb(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*[gG]?[bB]?\s*", str(text))
    if not m:
        raise ValueError(f"mem_per_gpu must look like '64G', got {text!r}")
    return int(m.group(1))


def submit(train_fn: Callable[..., dict], cfg: dict, timeout_min: int = 4320, cluster: str | None = None):
    """Submit `train_fn(cfg)` on cfg['nodes'] x cfg['tasks_per_node'] GPUs; returns the submitit job."""
    try:
        import submitit
    except ImportError as e:
        raise RuntimeError("SLURM submission needs submitit: pip install 'vjepa2_ros[slurm]'") from e
    executor = submitit.AutoExecutor(folder=Path(cfg["folder"]) / "slurm" / "%j", cluster=cluster)
    gpus = cfg["tasks_per_node"]
    executor.update_parameters(
        name=f"{cfg['app']}-{Path(cfg['folder']).name}",
        nodes=cfg["nodes"],
        tasks_per_node=gpus,
        gpus_per_node=gpus,
        cpus_per_task=cfg["cpus_per_task"],
        mem_gb=_mem_gb(cfg["mem_per_gpu"]) * gpus,
        timeout_min=timeout_min,
    )
    return executor.submit(TrainTask(train_fn, cfg))
