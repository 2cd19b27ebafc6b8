"""The run life cycle both training stages share: start, resume, batches, logs, checkpoints, stop rules.

`training/pretrain.py` and `training/train_ac.py` build their models and data, hand them to an `Engine`, and keep
only the loop body (forward, loss, backward, optimizer step) in view. So both stages resume, checkpoint, log and
stop the same way, and a fix here fixes both.

Exit codes of both entry scripts (`main(argv) -> int`; library callers get the exceptions instead):
    0  finished: all epochs, or `meta.max_steps`
    2  bad command line or config (`prog: error: ...`), or data that cannot be read
    3  cannot start from a checkpoint (`CheckpointError`: resume, cooldown or encoder weights missing or not fitting)
    4  non-finite loss (`NonFiniteLoss`): the run stops before that step's update on every rank and writes
       nothing, so `latest.pt` keeps the last finite state; resume from it with a lower `optimization.lr`

Resume state, one set of keys in every checkpoint of both stages: `step` (optimizer steps done), `epoch` and `itr`
(step = epoch * ipe + itr), `scheduler` ({"step": k}), `rng` (one RNG state per rank), `opt`, `scaler`, `skipped`,
`loss`, plus the reference entries `batch_size`, `world_size`, `lr`, the stage's weights and `model_config`.
Checkpoints of the earlier layouts still resume: pretraining's `epoch` + `itr` + one RNG state, AC's without `itr`.

Cadence: `latest.pt` at every epoch end, every `meta.checkpoint_every_steps` steps and at the last step;
`e{epoch}.pt` kept at epoch ends every `meta.save_every_freq` epochs. Logs in the run folder: `train.csv` (every
`meta.log_every` steps, epoch ends and the last step) and `val.csv` (every `meta.eval_freq` steps and the last).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from vjepa2_core.training import slurm
from vjepa2_core.training.checkpoint import (
    CheckpointError,
    load_training_checkpoint,
    rng_state,
    save_training_checkpoint,
    seed_everything,
    set_rng_state,
)
from vjepa2_core.training.config import ConfigError, Field, dump_config, load_config
from vjepa2_core.training.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    cleanup,
    gather_objects,
    init_distributed,
)
from vjepa2_core.training.metrics import CSVLogger, Throughput
from vjepa2_core.training.optim import resolve_dtype

EXIT_OK, EXIT_USAGE, EXIT_CHECKPOINT, EXIT_NON_FINITE = 0, 2, 3, 4

LAUNCH_SCHEMA = {  # top-level launcher keys, read by `--slurm` only
    "nodes": Field(int, 1),
    "tasks_per_node": Field(int, 1, doc="processes (GPUs) per node"),
    "cpus_per_task": Field(int, 8, nullable=True),
    "mem_per_gpu": Field(str, "64G", nullable=True),
}
RUN_META_SCHEMA = {  # meta keys with one meaning (and one default) in both stages
    "dtype": Field(str, "bfloat16", choices=("float32", "bfloat16", "float16")),
    "seed": Field(int, 234),
    "use_sdpa": Field(bool, True),
    "device": Field(str, "auto", choices=("auto", "cpu", "cuda")),
    "num_threads": Field(int, None, doc="torch CPU threads per process (null: torch's default)"),
    "load_checkpoint": Field(bool, False, doc="resume from folder/latest.pt (same as --resume)"),
    "resume_checkpoint": Field(str, None, doc="start from this checkpoint when folder/latest.pt is not resumed"),
    "checkpoint_every_steps": Field(int, 0, doc="also write latest.pt every N steps (0: epoch ends only)"),
    "save_every_freq": Field(int, 50, doc="keep e{epoch}.pt every this many epochs (0: never)"),
    "eval_freq": Field(int, 100, doc="steps between held-out evaluations (0: none)"),
    "log_every": Field(int, 10, doc="steps between train.csv rows"),
    "max_steps": Field(int, None, doc="stop after this many steps (the schedule is unchanged)"),
}
RENAMED_KEYS = {  # old name -> new name; the old one is still read, with a RenamedKeyWarning
    "meta.read_checkpoint": "meta.resume_checkpoint",
    "meta.save_every_steps": "meta.checkpoint_every_steps",
}
LOG_KEYS = ["step", "epoch", "itr"]  # first columns of train.csv and val.csv: the step, its epoch and place in it

log = logging.getLogger("vjepa2.train")


class NonFiniteLoss(FloatingPointError):
    """The loss (mean over ranks) is NaN or infinite: the run stops with exit code 4."""


def load_run_config(path: str | Path, schema: Mapping, overrides: Sequence[str] = ()) -> dict:
    """A stage's config: YAML + `--set` overrides, old key names accepted (`RENAMED_KEYS`), validated."""
    return load_config(path, schema, overrides, renamed=RENAMED_KEYS)


def console_main(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    load: Callable[[str, Sequence[str]], dict],
    train: Callable[..., dict],
    usage_errors: tuple[type[Exception], ...] = (),
) -> int:
    """The `main` of both training scripts: parse, load the config, then run here (the summary printed as JSON) or
    submit; exit codes above."""
    args = parser.parse_args(argv)
    slurm.check_launch_arguments(parser, args)
    try:
        cfg = load(args.config, args.overrides)
        if args.slurm:
            return slurm.launch(train, cfg, args)
        summary = train(cfg, resume=args.resume)
    except (ConfigError, slurm.LaunchError, *usage_errors) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CheckpointError as exc:
        print(f"{parser.prog}: cannot start from checkpoint: {exc}", file=sys.stderr)
        return EXIT_CHECKPOINT
    except NonFiniteLoss as exc:
        print(f"{parser.prog}: stopped: {exc}", file=sys.stderr)
        return EXIT_NON_FINITE
    print(json.dumps(summary), flush=True)  # the last line of stdout: step, loss, skipped, folder
    return EXIT_OK


@dataclass(frozen=True)
class Run:
    """A started run: its validated config, rank and device, compute dtype and output folder."""

    cfg: dict
    dist: DistInfo
    dtype: torch.dtype
    folder: Path

    @property
    def device(self) -> torch.device:
        return self.dist.device

    @property
    def latest(self) -> Path:
        return self.folder / "latest.pt"


def start_run(cfg: dict) -> Run:
    """Join the process group, seed, set threads, create the folder and record the config (rank 0)."""
    meta = cfg["meta"]
    dist = init_distributed(meta["device"])
    logging.basicConfig(level=logging.INFO if dist.is_main else logging.WARNING, format="%(asctime)s %(message)s")
    if meta["num_threads"]:
        torch.set_num_threads(meta["num_threads"])
    seed_everything(meta["seed"])
    folder = Path(cfg["folder"])
    if dist.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, folder / "config.yaml")
    return Run(cfg, dist, resolve_dtype(meta["dtype"], dist.device), folder)


def resume_source(run: Run, resume: bool) -> Path | None:
    """The checkpoint to continue from: this run's latest.pt when resuming (`--resume`, `meta.load_checkpoint`)
    and it exists, so a requeued job continues itself; else `meta.resume_checkpoint`; else None (a fresh start)."""
    meta = run.cfg["meta"]
    if (resume or meta["load_checkpoint"]) and run.latest.is_file():
        return run.latest
    if meta["resume_checkpoint"]:
        path = Path(meta["resume_checkpoint"])
        if not path.is_file():
            raise CheckpointError(f"meta.resume_checkpoint {path} does not exist")
        return path
    if resume:
        log.info("no checkpoint at %s: starting from scratch", run.latest)
    return None


def resume_step(ckpt: Mapping[str, Any], ipe: int) -> int:
    """Optimizer steps done: `step`, or epoch * ipe + itr for checkpoints written before `step` was stored."""
    if "step" in ckpt:
        return int(ckpt["step"])
    if "epoch" in ckpt:
        return int(ckpt["epoch"]) * ipe + int(ckpt.get("itr", 0))
    raise CheckpointError(f"checkpoint has neither 'step' nor 'epoch' (has {sorted(ckpt)})")


def rank_rng(rng: Any, rank: int) -> Mapping | None:
    """This rank's RNG state from a per-rank list (or the single state older pretraining checkpoints hold)."""
    if isinstance(rng, Sequence) and not isinstance(rng, str | bytes):
        return rng[rank] if rank < len(rng) else (rng[0] if rng else None)
    return rng


@dataclass
class Engine:
    """Optimizer, schedule and scaler of one run plus everything around the loop body.

    The loop calls `batches()`, then per step `check_finite`, the update, `step_done`, and `validate` / `save`
    when `eval_due` / `checkpoint_due`; `finish()` closes the run.
    """

    run: Run
    optimizer: torch.optim.Optimizer
    scheduler: Any  # schedules.Scheduler
    scaler: torch.amp.GradScaler
    ipe: int
    batch_size: int
    train_columns: Sequence[str]
    val_columns: Sequence[str] = ()
    step: int = 0
    skipped: int = 0
    loss: float = math.nan
    resumed_from: Path | None = field(default=None, init=False)
    train_log: CSVLogger | None = field(default=None, init=False)  # opened when the loop starts (after a resume)
    val_log: CSVLogger | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.meta = self.run.cfg["meta"]
        epochs_end, max_steps = self.run.cfg["optimization"]["epochs"] * self.ipe, self.meta["max_steps"]
        self.total = epochs_end if max_steps is None else min(epochs_end, max_steps)

    # -- resume ---------------------------------------------------------------------------------------------------
    def resume(self, path: Path, weights: Mapping[str, Callable[[Mapping], Any]]) -> dict:
        """Load `weights` (checkpoint key -> loader), optimizer, scaler, schedule, step and this rank's RNG."""
        ckpt = load_training_checkpoint(path, required=(*weights, "opt"))
        try:
            for key, load in weights.items():
                load(ckpt[key])
            self.optimizer.load_state_dict(ckpt["opt"])
            if ckpt.get("scaler") is not None and self.scaler.is_enabled():
                self.scaler.load_state_dict(ckpt["scaler"])
            self.step = resume_step(ckpt, self.ipe)
            self.scheduler.load_state_dict(ckpt.get("scheduler") or {"step": self.step})
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"cannot resume from {path}: {exc}") from exc
        self.skipped, self.loss = int(ckpt.get("skipped", 0)), float(ckpt.get("loss", math.nan))
        rng = rank_rng(ckpt.get("rng"), self.run.dist.rank)
        if rng is not None:
            set_rng_state(rng)
        self.resumed_from = Path(path)
        log.info("resumed from %s at step %d (epoch %d)", path, self.step, self.step // self.ipe)
        return ckpt

    # -- the loop ---------------------------------------------------------------------------------------------------
    def batches(self, make_loader: Callable[[int, int], Iterable], per_pass: int) -> Iterator:
        """Batches from the current step to the last. Data pass p = step // per_pass starts at batch
        step % per_pass: `make_loader(p, offset)` yields that pass from there, so a resume replays it exactly."""
        self._open_logs()
        while self.step < self.total:
            before = self.step
            data_pass, offset = divmod(self.step, per_pass)
            for batch in islice(make_loader(data_pass, offset), per_pass - offset):
                yield batch
                if self.step >= self.total:
                    return
            if self.step == before:
                raise RuntimeError(f"data pass {data_pass} gave no batch (is the dataset empty?)")

    def check_finite(self, *losses: torch.Tensor) -> list[float]:
        """The losses as floats, averaged over ranks; `NonFiniteLoss` (on every rank) if the first is not finite."""
        stats = all_reduce_mean(torch.stack([x.detach().float() for x in losses])).cpu().tolist()
        if not math.isfinite(stats[0]):
            raise NonFiniteLoss(f"loss is {stats[0]} at step {self.step + 1}; lower optimization.lr")
        self.loss = stats[0]
        return stats

    def step_done(self, items: int, row: Mapping[str, Any]) -> None:
        """Count the step; log `row` (plus step, epoch, itr, clips_per_s) when due."""
        self.step += 1
        self.meter.update(items * self.run.dist.world_size)
        self.bar.update(1)
        if self.step % self.meta["log_every"] == 0 or self.step % self.ipe == 0 or self.step == self.total:
            rate = self.meter.rate()
            self.train_log.log({**self.position(), **row, "clips_per_s": rate})
            self.bar.set_postfix(loss=f"{self.loss:.4f}", clips_s=f"{rate:.1f}")

    @property
    def elapsed(self) -> float:
        """Seconds since this process started the loop."""
        return time.perf_counter() - self.started

    def position(self) -> dict[str, int]:
        """step, the epoch it belongs to and its place in that epoch (1..ipe), as logged."""
        epoch = (self.step - 1) // self.ipe
        return {"step": self.step, "epoch": epoch, "itr": self.step - epoch * self.ipe}

    def eval_due(self) -> bool:
        every = self.meta["eval_freq"]
        return every > 0 and (self.step % every == 0 or self.step == self.total)

    def validate(self, evaluate: Callable[[], Mapping[str, float]]) -> None:
        """Run `evaluate` on rank 0 (the others wait) and log its numbers to val.csv."""
        if self.run.dist.is_main:
            numbers = evaluate()
            self.val_log.log({**self.position(), **numbers})
            log.info("step %d held-out: %s", self.step, {k: round(v, 4) for k, v in numbers.items()})
        barrier()

    def checkpoint_due(self) -> bool:
        every = self.meta["checkpoint_every_steps"]
        return self.step % self.ipe == 0 or self.step == self.total or (every > 0 and self.step % every == 0)

    def state(self) -> dict[str, Any]:
        """The resume state (module docstring); call on every rank, it gathers each rank's RNG."""
        rngs = gather_objects(rng_state())
        return {
            "opt": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "step": self.step,
            "epoch": self.step // self.ipe,
            "itr": self.step % self.ipe,
            "scheduler": self.scheduler.state_dict(),
            "rng": rngs,
            "skipped": self.skipped,
            "loss": self.loss,
            "batch_size": self.batch_size,
            "world_size": self.run.dist.world_size,
            "lr": self.scheduler.lr,
        }

    def save(self, weights: Callable[[], Mapping[str, Any]]) -> None:
        """Write latest.pt (rank 0; `weights()` adds the stage's modules and model_config), e{epoch}.pt when due."""
        state = self.state()
        if self.run.dist.is_main:
            epoch, every = self.step // self.ipe, self.meta["save_every_freq"]
            keep = self.step % self.ipe == 0 and every > 0 and epoch % every == 0
            snapshot = self.run.folder / f"e{epoch}.pt" if keep else None
            save_training_checkpoint(self.run.latest, {**weights(), **state}, snapshot)
        barrier()

    def finish(self) -> dict[str, Any]:
        """Close logs and the process group; the run's summary."""
        self.bar.close()
        if self.run.device.type == "cuda":
            log.info("peak GPU memory %.1f GiB", torch.cuda.max_memory_allocated(self.run.device) / 2**30)
        self.train_log.close()
        self.val_log.close()
        cleanup()
        return {"step": self.step, "loss": self.loss, "skipped": self.skipped, "folder": str(self.run.folder)}

    def _open_logs(self) -> None:
        if self.train_log is not None:
            return
        folder, main = self.run.folder, self.run.dist.is_main
        resumed = self.step if self.resumed_from is not None else None
        legacy = folder / "log.csv"  # pretraining's train log before train.csv
        if main and resumed is not None and legacy.is_file() and not (folder / "train.csv").exists():
            legacy.rename(folder / "train.csv")
        columns = [*LOG_KEYS, *self.train_columns] + ([] if "clips_per_s" in self.train_columns else ["clips_per_s"])
        self.train_log = CSVLogger(folder / "train.csv", columns, main, resumed)
        self.val_log = CSVLogger(folder / "val.csv", [*LOG_KEYS, *self.val_columns], main, resumed)
        self.meter, self.started = Throughput(), time.perf_counter()
        self.bar = tqdm(total=self.total, initial=self.step, disable=not main, dynamic_ncols=True, mininterval=1.0)
